"""Reading any input picture as BasicSR's float BGR array, and writing a result back in the input's own format.

``read_image`` turns greyscale, RGBA, 8- and 16-bit files into ``(H, W, 3)`` float32 BGR in [0, 1] (what
``basicsr.utils.img2tensor`` expects) and remembers what the file was in an :class:`ImageInfo`; ``write_image``
uses that record to write the super-resolved result as grey, 16-bit or RGBA again. Missing, undecodable and
truncated files raise :class:`ImageReadError`, whose message names the file and says what to do.
``check_image_file`` makes the same checks without decoding PNG pixels (for listing the usable files of a data set).
Pixels and sizes are as a viewer shows them: the EXIF orientation of a JPEG, PNG or WebP is applied, as OpenCV's
``IMREAD_COLOR`` (BasicSR's own decoder) does.
"""
import io
import os
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic_io import atomic_write

SIXTEEN_BIT_EXTENSIONS = ('.png', '.tif', '.tiff')
PNG_COMPRESSION = 3  # BasicSR's choice for its own PNGs
EXIF_ORIENTATION = 0x0112  # the EXIF tag of how the stored pixels are turned
ORIENTED_FORMATS = ('JPEG', 'MPO', 'PNG', 'WEBP')  # Pillow formats whose EXIF orientation IMREAD_UNCHANGED ignores
IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm', '.pnm')


class ImageReadError(Exception):
    """An input picture that cannot be used; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str, reason: str,
                 hint: str = 'Re-save it as an 8- or 16-bit PNG/JPEG, or remove it from the input.') -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot read image '{path}': {reason}. {hint}")


@dataclass(frozen=True)
class ImageInfo:
    """What the input file was, so the output can be written the same way.

    mode: 'grey', 'rgb', 'rgba', or 'grey_alpha' (a four-channel decode whose colour channels are equal: a grey+alpha
        file, which OpenCV decodes as BGRA).
    bit_depth: 8 or 16.
    alpha: (H, W) float32 in [0, 1] for 'rgba' and 'grey_alpha' inputs, else None.
    """
    mode: str
    bit_depth: int
    alpha: Optional[np.ndarray] = None

    @property
    def description(self) -> str:
        return self.mode if self.bit_depth == 8 else f'{self.mode} 16-bit'


def _check_complete(path: str, data: bytes) -> Optional[Tuple[int, int, int]]:
    """Raise :class:`ImageReadError` if the file is truncated or corrupt (OpenCV may decode a partial picture with
    only a warning). PNGs are checked chunk by chunk (CRCs up to IEND, no pixel decoding); other formats Pillow
    knows are decoded once. Formats Pillow does not read are left to OpenCV. Returns ``(height, width,
    orientation)``, the size upright (:func:`upright_size`) and the EXIF orientation (:func:`orientation_of`), or
    None for a format Pillow does not read."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            orientation = orientation_of(img)  # from the header: the PNG's verify() below still comes first
            width, height = upright_size(img, orientation)
            if img.format == 'PNG':
                img.verify()
            else:
                img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageReadError(path, f'the file is truncated or corrupt ({err})') from err
    return height, width, orientation


def orientation_of(img: Image.Image) -> int:
    """The EXIF orientation (1-8) that OpenCV's ``IMREAD_COLOR`` applies and ``IMREAD_UNCHANGED`` does not, of an
    opened Pillow image, from the EXIF bytes of its header (``Image.getexif`` would decode a whole PNG); 1 where it
    has none, an invalid one, or is a TIFF (whose orientation both libraries apply when they decode it)."""
    raw = img.info.get('exif')
    if img.format not in ORIENTED_FORMATS or not raw:
        return 1
    exif = Image.Exif()
    try:
        exif.load(raw)
        orientation = exif.get(EXIF_ORIENTATION, 1)
    except Exception:  # EXIF that Pillow cannot parse (it raises many types): none, as OpenCV then reads it
        return 1
    return orientation if isinstance(orientation, int) and orientation in range(1, 9) else 1


def upright_size(img: Image.Image, orientation: Optional[int] = None) -> Tuple[int, int]:
    """``(width, height)`` of an opened Pillow image as a viewer shows it (EXIF orientations 5-8 swap the sides),
    from the header: the size OpenCV's ``IMREAD_COLOR`` and :func:`read_image` decode it to. ``orientation``: its
    :func:`orientation_of`, where the caller has it already."""
    width, height = img.size
    turned = (orientation_of(img) if orientation is None else orientation) >= 5
    return (height, width) if turned else (width, height)


def _upright(img: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W[, C]) pixels as OpenCV's IMREAD_UNCHANGED decodes them -> as a viewer shows them, turned as the EXIF
    ``orientation`` (1-8, :func:`orientation_of`) says, which is what IMREAD_COLOR gives: a phone photo stored
    sideways is super-resolved upright. 5-8 are 1-4 after a transpose."""
    if orientation >= 5:
        img = np.swapaxes(img, 0, 1)
        orientation -= 4
    if orientation in (2, 3):
        img = img[:, ::-1]
    if orientation in (3, 4):
        img = img[::-1]
    return np.ascontiguousarray(img)


def _read_bytes(path: str) -> bytes:
    if not os.path.isfile(path):
        raise ImageReadError(path, 'no such file', 'Check the path.')
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:
        raise ImageReadError(path, f'cannot open it ({err})', 'Check its permissions.') from err


def _decode(path: str, data: bytes, flags: int) -> np.ndarray:
    if not data:
        raise ImageReadError(path, 'the file is empty (0 bytes)')
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as err:
        raise ImageReadError(path, f"OpenCV cannot decode it ({' '.join(str(err).split())})") from err
    if img is None:
        raise ImageReadError(path, 'it is not an image OpenCV can decode (unknown format, corrupt or truncated)')
    return img


def check_image_file(path: str) -> Tuple[int, int]:
    """``(height, width)`` of ``path`` if it is a complete image that :func:`read_image` (and OpenCV) can decode;
    raises :class:`ImageReadError` otherwise. PNG pixels are not decoded (their chunk CRCs are checked)."""
    data = _read_bytes(path)
    stored = _check_complete(path, data)
    return stored[:2] if stored is not None else _decode(path, data, cv2.IMREAD_UNCHANGED).shape[:2]


def read_image(path: str) -> Tuple[np.ndarray, ImageInfo]:
    """Decode ``path`` -> ``(H, W, 3)`` float32 BGR in [0, 1], and its :class:`ImageInfo`.

    Greyscale becomes 3 equal channels; the alpha of RGBA is set aside in the info; 16-bit is divided by 65535,
    8-bit by 255; an EXIF orientation is applied (:func:`_upright`).
    """
    data = _read_bytes(path)
    stored = _check_complete(path, data)
    img = _upright(_decode(path, data, cv2.IMREAD_UNCHANGED), stored[2] if stored else 1)
    if img.dtype == np.uint8:
        bit_depth, peak = 8, 255.0
    elif img.dtype == np.uint16:
        bit_depth, peak = 16, 65535.0
    else:
        raise ImageReadError(path, f'unsupported pixel type {img.dtype} (expected 8- or 16-bit integers)')
    img = img.astype(np.float32) / peak
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2)), ImageInfo('grey', bit_depth)
    if img.shape[2] == 4:
        colour, alpha = np.ascontiguousarray(img[:, :, :3]), np.ascontiguousarray(img[:, :, 3])
        grey = np.array_equal(colour[:, :, 0], colour[:, :, 1]) and np.array_equal(colour[:, :, 1], colour[:, :, 2])
        return colour, ImageInfo('grey_alpha' if grey else 'rgba', bit_depth, alpha)
    if img.shape[2] == 3:
        return img, ImageInfo('rgb', bit_depth)
    raise ImageReadError(path, f'unsupported number of channels {img.shape[2]} (expected 1, 3 or 4)')


def _restore_mode(img: np.ndarray, info: ImageInfo) -> np.ndarray:
    """(H, W, 3) float BGR -> (H, W) grey, (H, W, 4) BGRA with the alpha resized to (H, W) bicubically (for
    'grey_alpha' with three equal grey channels: OpenCV writes no two-channel PNG), or as is."""
    if info.mode in ('grey', 'grey_alpha'):
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if info.mode == 'grey':
            return img
        img = np.repeat(img[:, :, None], 3, axis=2)
    if info.alpha is not None:
        height, width = img.shape[:2]
        alpha = cv2.resize(info.alpha, (width, height), interpolation=cv2.INTER_CUBIC)
        return np.concatenate([img, alpha[:, :, None]], axis=2)
    return img


def write_array(path: str, array: np.ndarray) -> None:
    """Encode ``array`` ((H, W), (H, W, 3) BGR or (H, W, 4) BGRA; uint8, or uint16 for PNG/TIFF) in the format of the
    extension of ``path`` and write it atomically."""
    ext = os.path.splitext(path)[1].lower()
    params = [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION] if ext == '.png' else []
    try:
        ok, buf = cv2.imencode(ext, array, params)
    except cv2.error as err:
        raise OSError(f"could not encode '{path}': {err}") from err
    if not ok:
        raise OSError(f"could not encode '{path}' as {ext}")
    atomic_write(path, lambda f: f.write(buf.tobytes()))


def write_image(path: str, img: np.ndarray, info: ImageInfo) -> None:
    """Write ``img`` ((H, W, 3) float BGR in [0, 1]) atomically at ``path`` in the input's mode: grey stays grey,
    RGBA gets its alpha back (upscaled bicubically), 16-bit stays 16-bit where the format allows it (PNG/TIFF;
    others are written 8-bit). The format follows the extension of ``path``."""
    sixteen = info.bit_depth == 16 and os.path.splitext(path)[1].lower() in SIXTEEN_BIT_EXTENSIONS
    peak, dtype = (65535.0, np.uint16) if sixteen else (255.0, np.uint8)
    out = np.clip(_restore_mode(img.astype(np.float32), info), 0.0, 1.0)
    write_array(path, np.round(out * peak).astype(dtype))
