"""The ``--allocator`` choice: glibc malloc as it is, or tuned as ``basicsr train/test`` tune it."""
import os
from typing import Dict

from ..utils import allocator
from .options import BenchError

CHOICES = ('default', 'tuned')


def apply_allocator(mode: str) -> Dict:
    """Apply ``mode`` to this process (every network runs in it alike) and describe what was done, for the JSON.

    ``tuned`` calls ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, INT_MAX)`` (2 GiB) through ctypes
    (:func:`adaformer_arch.utils.allocator.tune_glibc_malloc`); ``default`` leaves malloc alone.
    """
    if mode not in CHOICES:
        raise BenchError(f'--allocator must be one of {CHOICES}, got {mode!r}')
    record = {
        'mode': mode,
        'environment': {k: v for k, v in os.environ.items() if k.startswith('MALLOC_') or k == 'LD_PRELOAD'},
    }
    if mode == 'tuned':
        if os.environ.get('ADAFORMER_MALLOC') == 'default':
            raise BenchError('--allocator tuned but ADAFORMER_MALLOC=default is set: unset it')
        if not allocator.tune_glibc_malloc():
            raise BenchError('--allocator tuned needs glibc malloc (Linux): mallopt is not available here; '
                             'use --allocator default')
        record['method'] = 'mallopt via ctypes'
        record['settings'] = {'M_MMAP_MAX': 0, 'M_TRIM_THRESHOLD': allocator.TRIM_THRESHOLD_BYTES}
    else:
        record['method'] = 'none (glibc defaults)'
    return record
