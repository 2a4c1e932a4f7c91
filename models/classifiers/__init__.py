"""CIFAR-10 ResNet classifiers (models.classifiers.resnet_cifar)."""
