"""sreels: spatially-resolved EELS of battery interfaces."""

__version__ = "0.1.0"
