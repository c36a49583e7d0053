"""LR input images of a given size for latency runs.

Halting makes AdaFormer's cost depend on the content, so the input should look like a photo: either an image file
(mirrored tiles of it when it is smaller than the size, a centre crop when larger: the pixels keep their natural
statistics, nothing is resampled) or, by default, a deterministic synthetic picture with flat regions, gradients,
edges and a textured area.
"""
from typing import Optional, Tuple

import cv2
import numpy as np
from torch import Tensor

from basicsr.utils import img2tensor

from .options import BenchError


def synthetic_image(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) float32 BGR in [0, 1]: smooth colour field, flat shapes with sharp edges, fine texture."""
    rng = np.random.default_rng(seed)
    field = rng.random((max(2, height // 48), max(2, width // 48), 3)).astype(np.float32)
    img = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC) * 0.6 + 0.2
    for _ in range(max(4, width * height // 4000)):
        colour = tuple(float(c) for c in rng.random(3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(2, max(3, min(width, height) // 6)))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, colour, -1, lineType=cv2.LINE_AA)
        else:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), colour, -1)
    texture = rng.normal(0, 0.08, (height, width, 1)).astype(np.float32)
    mask = np.zeros((height, width, 1), np.float32)
    mask[:, :width // 3] = 1.0
    return np.clip(img + texture * mask, 0.0, 1.0)


def _fit(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """Mirror-tile ``img`` until it covers (height, width), then crop the centre."""
    while img.shape[0] < height or img.shape[1] < width:
        pad_v = min(img.shape[0] - 1, max(0, height - img.shape[0]))
        pad_h = min(img.shape[1] - 1, max(0, width - img.shape[1]))
        img = cv2.copyMakeBorder(img, 0, pad_v, 0, pad_h, cv2.BORDER_REFLECT_101)
    top, left = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
    return img[top:top + height, left:left + width]


def load_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise BenchError(f'input image {path} cannot be read (missing or not an image)')
    if min(img.shape[:2]) < 2:
        raise BenchError(f'input image {path} is too small ({img.shape[1]}x{img.shape[0]})')
    return img.astype(np.float32) / 255.0


def lr_input(size: Tuple[int, int], image: Optional[np.ndarray] = None) -> Tensor:
    """(1, 3, height, width) RGB float tensor in [0, 1] for ``size`` = (width, height)."""
    width, height = size
    img = synthetic_image(width, height) if image is None else _fit(image, width, height)
    # contiguous NCHW, as a BasicSR data loader's batch (img2tensor alone gives an HWC-strided view)
    return img2tensor(np.ascontiguousarray(img), bgr2rgb=True, float32=True).unsqueeze(0).contiguous()
