"""Reading input images into 8-bit 3-channel arrays, and writing PNGs atomically.

Inputs come in every flavour (greyscale, 16-bit, RGBA, broken files); everything downstream sees ``(H, W, 3)``
uint8 BGR arrays, and each conversion is reported as a note so the user knows what happened.
"""
import os
from typing import IO, List, Optional, Tuple

import cv2
import numpy as np
from PIL import Image

from basicsr.utils import scandir

from ..utils.atomic_io import atomic_write

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
PNG_COMPRESSION = 3  # BasicSR's choice for its prepared data sets
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ImageError(Exception):
    """An input image that cannot be used (does not decode, unsupported pixel type, too small)."""


def list_images(folder: str) -> List[str]:
    """Sorted names of the image files directly in ``folder`` (by extension, case-insensitive; no hidden files)."""
    return sorted(name for name in scandir(folder) if name.lower().endswith(IMAGE_EXTENSIONS))


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """``(height, width)`` from the file header without decoding the pixels; ``None`` if the header is unreadable."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return height, width


def read_image(path: str) -> Tuple[np.ndarray, List[str]]:
    """Decode ``path`` to a ``(H, W, 3)`` uint8 BGR array.

    Greyscale becomes 3 equal channels, 16-bit is scaled to 8-bit (``round(v / 257)``), an alpha channel is
    dropped (not composited). Returns the image and the list of conversions applied. Raises :class:`ImageError`
    if the file does not decode or holds another pixel type (e.g. 32-bit float).
    """
    img = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError('cannot be decoded (corrupt, truncated or not an image)')
    notes = []
    if img.dtype == np.uint16:
        img = np.round(img / 257.0).astype(np.uint8)
        notes.append('16-bit converted to 8-bit')
    elif img.dtype != np.uint8:
        raise ImageError(f'unsupported pixel type {img.dtype} (expected 8- or 16-bit)')
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img = img[:, :, :img.shape[2] - 1]
        notes.append('alpha channel dropped')
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
        notes.append('greyscale converted to 3 channels')
    return np.ascontiguousarray(img), notes


def write_png(path: str, img: np.ndarray) -> None:
    """Write ``img`` ((H, W, 3) uint8 BGR) as PNG at ``path`` atomically (no half-written file ever exists)."""
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise RuntimeError(f'could not encode {path} as PNG')

    def write(f: IO[bytes]) -> None:
        f.write(buf.tobytes())
        os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # the temporary file is private (0600); give the usual mode

    atomic_write(path, write)

