"""glibc malloc tuning for CPU inference and training.

By default glibc serves large blocks with mmap and gives freed memory back to the kernel right away; PyTorch on
the CPU allocates and frees activation buffers of tens of MB in every forward, so each forward pays page faults
for memory it just returned (about half of SwinIR-light's CPU time at 480x270). Disabling mmap for large blocks
and raising the trim threshold keeps that memory in the process and reuses it.

``mallopt`` takes a C ``int``: through ctypes a larger Python int is silently masked to 32 bits (``1 << 34``
becomes a threshold of 0, so the heap is trimmed after nearly every free: about 130k page faults per forward of
the conv floor at 480x270; docs/benchmark.md, "Allocator"). ``INT_MAX`` bytes is the largest threshold it takes.
"""
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
INT_MAX = 2**31 - 1
TRIM_THRESHOLD_BYTES = INT_MAX  # 2 GiB: free memory at the top of the heap is kept up to this much


def tune_glibc_malloc() -> bool:
    """Apply the tuning to the running process (Linux/glibc only). Set ``ADAFORMER_MALLOC=default`` to skip it.

    Returns True when it was applied.
    """
    if os.environ.get('ADAFORMER_MALLOC', 'tuned') == 'default' or not sys.platform.startswith('linux'):
        return False
    name = ctypes.util.find_library('c')
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, 'mallopt'):
        return False
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
