"""The image pairs of a `basicsr test` data set that can be evaluated, and how their files are decoded.

BasicSR's ``PairedImageDataset`` decodes each file with ``cv2.IMREAD_COLOR`` when the test reaches it: a truncated
or corrupt file then stops the whole run with ``AttributeError: 'NoneType' object has no attribute 'astype'``
(naming no file), 16-bit files are cut to 8 bits before the network sees them, and an image too small for a metric
(SSIM's 11 x 11 window, or nothing left after ``crop_border``) turns that metric into NaN for the whole data set.

:func:`drop_unusable_pairs` checks every pair of a data set before testing (headers and PNG chunk CRCs, no pixel
decoding) and removes the pairs that cannot be evaluated, with one message per pair naming the file and the reason.
:func:`imfrombytes` replaces BasicSR's decoder in ``PairedImageDataset``: as BasicSR's (3-channel BGR, greyscale
repeated, alpha dropped) but 16-bit files keep their precision (divided by 65535).
"""
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

import cv2
import numpy as np

from basicsr.utils import img_util

from ..utils.image_io import ImageReadError, check_image_file

#: side of the Gaussian window of BasicSR's ``calculate_ssim`` (valid filtering: smaller images have no SSIM)
SSIM_WINDOW = 11
CHECK_THREADS = 8


def imfrombytes(content: bytes, flag: str = 'color', float32: bool = False) -> np.ndarray:
    """BasicSR's ``imfrombytes``, except that 16-bit images are read as 16-bit (``float32``: divided by 65535)."""
    if flag != 'color' or not float32:
        return img_util.imfrombytes(content, flag, float32)
    img = cv2.imdecode(np.frombuffer(content, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None:  # drop_unusable_pairs removed the files it knows to be bad; say so rather than crash on None
        raise ValueError('OpenCV cannot decode an image of the data set (corrupt or truncated)')
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def metric_problem(lq_size: tuple, scale: int, metrics: Dict) -> str:
    """Why a metric of ``metrics`` (``val.metrics``) is undefined on a pair whose LR is ``lq_size`` (h, w), or ''.

    ``PairedImageDataset`` crops the HR of a test pair to scale x LR; the metrics then crop ``crop_border`` pixels
    on each side.
    """
    for name, cfg in (metrics or {}).items():
        kind = (cfg or {}).get('type')
        if kind not in ('calculate_psnr', 'calculate_ssim'):
            continue
        border = cfg.get('crop_border', 0)
        h, w = (s * scale - 2 * border for s in lq_size)
        need = SSIM_WINDOW if kind == 'calculate_ssim' else 1
        if min(h, w) < need:
            left = f'{max(h, 0)}x{max(w, 0)} px' if min(h, w) > 0 else 'nothing'
            return (f'metric {name} ({kind}) is undefined on this pair: LR {lq_size[0]}x{lq_size[1]} (HxW), HR '
                    f'{lq_size[0] * scale}x{lq_size[1] * scale} minus crop_border {border} on each side leaves {left}; '
                    f'{kind} needs at least {need}x{need} px')
    return ''


def _pair_problem(pair: Dict, scale: int, metrics: Dict) -> Optional[str]:
    try:
        check_image_file(pair['gt_path'])
        lq_size = check_image_file(pair['lq_path'])
    except ImageReadError as err:
        return f'{err.path}: {err.reason}'
    problem = metric_problem(lq_size, scale, metrics)
    return f"{pair['lq_path']}: {problem}" if problem else None


def drop_unusable_pairs(dataset, metrics: Optional[Dict]) -> List[str]:
    """Remove from ``dataset.paths`` (a test ``PairedImageDataset`` reading from disk) the pairs that cannot be
    evaluated: a file missing, truncated, corrupt or not an image, or too small for a metric of ``metrics``.
    Returns one message per removed pair, ``'<file>: <reason>'``. Other data sets (LMDB, other types) are left as
    they are."""
    if dataset.io_backend_opt.get('type') != 'disk' or not hasattr(dataset, 'paths'):
        return []
    scale = dataset.opt['scale']
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        problems = list(pool.map(lambda p: _pair_problem(p, scale, metrics), dataset.paths))
    dataset.paths = [p for p, problem in zip(dataset.paths, problems) if problem is None]
    return [problem for problem in problems if problem is not None]
