"""Networks registered in BasicSR's ARCH_REGISTRY."""
from .adaformer_arch import AdaFormer
from .bicubic_arch import Bicubic
from .conv_floor_arch import AdaFormerConvFloor

__all__ = ['AdaFormer', 'AdaFormerConvFloor', 'Bicubic']
