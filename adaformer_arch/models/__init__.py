"""Models registered in BasicSR's MODEL_REGISTRY."""
from .adaformer_model import AdaFormerModel

__all__ = ['AdaFormerModel']
