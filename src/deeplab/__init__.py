"""DeepLab v1: dense-prediction DCNN (atrous VGG-16) + fully connected CRF."""

__version__ = "0.1.0"
