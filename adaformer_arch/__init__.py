"""AdaFormer for BasicSR: importing this package registers its arch, loss and model in BasicSR's registries."""
from . import compat

compat.apply()

from . import archs, losses, models  # noqa: E402,F401  (registration side effects)

__version__ = '0.1.0'
