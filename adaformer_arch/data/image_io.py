"""Images of the preparation recipes: listing a folder, sizes from headers, reading as 8-bit 3-channel, writing PNG.

Inputs come in every flavour (greyscale, 16-bit, RGBA, broken files); everything downstream sees ``(H, W, 3)``
uint8 BGR arrays, and each conversion is reported as a note so the user knows what happened.
"""
import os
import re
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from basicsr.utils import scandir

from ..utils.image_io import IMAGE_EXTENSIONS, upright_size
from ..utils.image_io import read_image as read_float_image


def list_images(folder: str) -> List[str]:
    """Sorted names of the image files directly in ``folder`` (by extension, case-insensitive; no hidden files)."""
    return sorted(name for name in scandir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))


def image_number(name: str) -> Optional[int]:
    """The number of a DIV2K/DIV8K image from the leading digits of its stem (``1201.png`` -> 1201), or ``None``."""
    match = re.match(r'\d+', os.path.splitext(name)[0])
    return int(match.group()) if match else None


def mod_crop_size(size: Sequence[int], multiple: int) -> Tuple[int, int]:
    """The size of BasicSR's ``mod_crop`` of an image of ``size``: each side cut down to a multiple of ``multiple``."""
    return size[0] - size[0] % multiple, size[1] - size[1] % multiple


def hr_fits_lr(hr: Sequence[int], lr: Sequence[int], scale: int) -> bool:
    """An HR size is ``scale`` times the LR size plus less than ``scale`` pixels of border, side by side (the HR
    image's mod-``scale`` crop is exactly ``scale`` x LR): how benchmark sets pair their HR and LR images."""
    return all(q * scale <= g < (q + 1) * scale for g, q in zip(hr, lr))


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """``(height, width)`` from the file header without decoding the pixels, upright (as :func:`read_image`
    decodes it); ``None`` if the header is unreadable."""
    try:
        with Image.open(path) as img:
            width, height = upright_size(img)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return height, width


def read_image(path: str) -> Tuple[np.ndarray, List[str]]:
    """Decode ``path`` to a ``(H, W, 3)`` uint8 BGR array and the list of conversions applied.

    Reading is :func:`adaformer_arch.utils.image_io.read_image` (greyscale -> 3 equal channels, alpha set aside,
    truncated files detected); 16-bit is then rounded to 8-bit (``round(v / 257)``) and the alpha dropped (not
    composited). Raises ``adaformer_arch.utils.image_io.ImageReadError`` for files that cannot be used.
    """
    img, info = read_float_image(path)
    notes = []
    if info.bit_depth == 16:
        notes.append('16-bit converted to 8-bit')
    if info.mode in ('grey', 'grey_alpha'):
        notes.append('greyscale converted to 3 channels')
    if info.alpha is not None:
        notes.append('alpha channel dropped')
    return np.round(img * 255.0).astype(np.uint8), notes

