"""Networks registered in BasicSR's ARCH_REGISTRY."""
from .adaformer_arch import AdaFormer

__all__ = ['AdaFormer']
