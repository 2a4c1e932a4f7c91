"""QONNX in and out: model artifacts as QONNX graphs that run to the same integers, and QONNX
models (our own exports, Brevitas-style graphs) as artifacts.

Off-board tools (``onnx``/``qonnx``); the board runtime (``sw/``) imports none of this.

- :mod:`quant.qonnx.export`: an artifact as a QONNX ``ModelProto`` (``export_model``) or file.
- :mod:`quant.qonnx.importer`: a QONNX file as an artifact (``import_model``).
- :mod:`quant.qonnx.common`: what both share (names, the exactness bound, the one-line error).
- ``python -m quant.qonnx {export,import}``: the command line (:mod:`quant.qonnx.__main__`).
"""

from quant.qonnx.common import QonnxError
from quant.qonnx.export import export_file, export_model
from quant.qonnx.importer import import_file, import_model

__all__ = ["QonnxError", "export_file", "export_model", "import_file", "import_model"]
