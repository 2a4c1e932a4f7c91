"""Darknet files read without torch: ``cfg`` parses and validates a .cfg, ``weights`` cuts a
.weights file into each conv's floats, ``float_net`` runs the pair in float through OpenCV's DNN
module (``shiftdet detect --cfg``). ``models.darknet`` builds the PyTorch modules on top."""
