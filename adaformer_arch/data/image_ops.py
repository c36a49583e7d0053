"""Pixel operations of the preparation recipes: MATLAB bicubic resizing and sub-image boxes.

Mod-crop is BasicSR's ``basicsr.data.transforms.mod_crop`` (top-left crop to a multiple of the scale).
"""
from typing import List, Optional, Tuple

import numpy as np

from basicsr.utils.matlab_functions import imresize

MIN_LR_SIDE = 2  # BasicSR's imresize cannot shrink a side to 1 px (its weights and pixel indices differ in size)


def bicubic_resize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB ``imresize(img, scale, 'bicubic')`` (antialiased when shrinking) of a ``(H, W, C)`` uint8 image.

    Computed on float [0, 1] by BasicSR's MATLAB port, then rounded to uint8 as MATLAB does for uint8 input.
    Output size ``(ceil(H * scale), ceil(W * scale), C)``.
    """
    out = imresize(img.astype(np.float32) / 255.0, scale)
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def downscale_problem(height: int, width: int, factor: int) -> Optional[str]:
    """Why :func:`bicubic_downscale` cannot shrink a ``height`` x ``width`` image by ``factor``, or None."""
    if min(height, width) < MIN_LR_SIDE * factor:
        return (f'{width}x{height} is too small for x{factor}: its LR would be under {MIN_LR_SIDE} px a side, which '
                "BasicSR's bicubic imresize cannot make")
    return None


def bicubic_downscale(img: np.ndarray, factor: int) -> np.ndarray:
    """``(H, W, C)`` uint8 -> ``(H / factor, W / factor, C)``; H and W must be multiples of ``factor`` and at least
    ``MIN_LR_SIDE * factor``."""
    h, w = img.shape[:2]
    if h % factor or w % factor:
        raise ValueError(f'image size {h}x{w} is not a multiple of {factor}; mod-crop it first')
    problem = downscale_problem(h, w, factor)
    if problem:
        raise ValueError(problem)
    out = bicubic_resize(img, 1.0 / factor)
    if out.shape[:2] != (h // factor, w // factor):
        raise RuntimeError(f'bicubic x1/{factor} of {h}x{w} gave {out.shape[:2]}')
    return out


def crop_starts(length: int, crop: int, step: int) -> List[int]:
    """Start offsets of ``crop``-long windows every ``step`` along ``length``, plus one flush with the end if the
    last regular window leaves any pixel uncovered (BasicSR's DIV2K recipe with ``thresh_size`` 0).

    Empty when ``length < crop``.
    """
    if length < crop:
        return []
    starts = list(range(0, length - crop + 1, step))
    if starts[-1] + crop < length:
        starts.append(length - crop)
    return starts


def sub_image_boxes(height: int, width: int, crop: int, step: int) -> List[Tuple[int, int]]:
    """Top-left corners ``(y, x)`` of the sub-images of a ``height x width`` image, row by row; sub-image ``i``
    (from 0) is saved as ``<name>_s{i + 1:03d}``."""
    return [(y, x) for y in crop_starts(height, crop, step) for x in crop_starts(width, crop, step)]
