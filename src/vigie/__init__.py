"""vigie: a model serving and monitoring platform."""

__version__ = "0.1.0"
