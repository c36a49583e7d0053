"""glibc malloc tuning (adaformer_arch/utils/allocator.py): what ``mallopt`` is asked for (through a stand-in libc),
and that in a real process a freed large buffer then stays in the process instead of going back to the kernel.

Page faults are not counted here. Whether the next allocation of that size reuses the kept memory without faults
depends on the heap's layout, i.e. on everything the process allocated before: in a fresh interpreter that has only
imported torch, PyTorch's small allocations for the tensor land above a 64 MiB buffer, the freed buffer is then not
the top of the heap, and its memalign'ed successor (a few bytes larger) goes to new pages (16,384 faults, tuned or
not); after importing the whole package it is reused (0 faults). On glibc's default side the count depends on
transparent huge pages (32 instead of 16,384 faults for 64 MiB with THP 'always'). The fault counts of real
forwards are in docs/benchmark.md ("Allocator")."""
import ctypes
import os
import subprocess
import sys

import pytest

from adaformer_arch.utils import allocator

# One interpreter, glibc's defaults first, then tuned: each time, with one 64 MiB tensor alive, allocate and free a
# second one and print how much of it stays resident after the free (KiB). Only the allocator module is loaded (by
# path: the package would import BasicSR, which takes long to start).
REFILL = '''
import importlib.util, sys
import torch
spec = importlib.util.spec_from_file_location('allocator', sys.argv[1])
allocator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(allocator)
def rss_kib():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:'))
def kept_after_free():
    kept = torch.ones(16 * 2**20)
    before = rss_kib()
    buffer = torch.ones(16 * 2**20)
    del buffer
    print(rss_kib() - before)
kept_after_free()
print(allocator.tune_glibc_malloc())
kept_after_free()
'''
BUFFER_KIB = 64 * 1024

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc tuning is Linux-only')


def test_trim_threshold_fits_the_c_int_mallopt_takes():
    # ctypes masks a larger Python int to 32 bits without an error (1 << 34 became a threshold of 0).
    assert 0 < allocator.TRIM_THRESHOLD_BYTES <= allocator.INT_MAX


class FakeLibc:
    """Stands in for libc: records the ``mallopt(param, value)`` calls as C receives them (through the declared
    ``argtypes``, which mask a Python int to the C type's width as ctypes does)."""

    def __init__(self, result: int = 1) -> None:
        self.calls = []
        fake = self

        class Mallopt:
            argtypes = None
            restype = None

            def __call__(self, *args):
                types = self.argtypes or [None] * len(args)
                fake.calls.append(tuple(t(a).value if t else a for t, a in zip(types, args)))
                return result

        self.mallopt = Mallopt()


@pytest.mark.parametrize('result', [1, 0])
def test_tune_glibc_malloc_calls_mallopt_with_c_ints(monkeypatch, result):
    """mmap off for large blocks, trim threshold INT_MAX, both as C ints; True only when mallopt says both applied."""
    libc = FakeLibc(result)
    monkeypatch.delenv('ADAFORMER_MALLOC', raising=False)
    monkeypatch.setattr(allocator.ctypes.util, 'find_library', lambda name: 'libc.so.6')
    monkeypatch.setattr(allocator.ctypes, 'CDLL', lambda name: libc)
    assert allocator.tune_glibc_malloc() is bool(result)
    assert libc.calls[0] == (-4, 0)  # M_MMAP_MAX
    if result:
        assert libc.calls == [(-4, 0), (-1, 2**31 - 1)]  # M_TRIM_THRESHOLD, INT_MAX
        assert libc.mallopt.argtypes == (ctypes.c_int, ctypes.c_int) and libc.mallopt.restype is ctypes.c_int
    monkeypatch.setenv('ADAFORMER_MALLOC', 'default')
    libc.calls.clear()
    assert allocator.tune_glibc_malloc() is False and libc.calls == []


def test_tuned_malloc_keeps_a_freed_large_buffer_in_the_process():
    """In a fresh interpreter with glibc's own settings (no MALLOC_* tunables or preloaded allocator from the
    environment): by default a freed 64 MiB block leaves the process (glibc mmaps blocks over 32 MiB and unmaps them
    when freed); tuned, the same block comes from the heap and stays resident after the free."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('MALLOC_') and k not in ('GLIBC_TUNABLES', 'LD_PRELOAD', 'ADAFORMER_MALLOC')}
    out = subprocess.run([sys.executable, '-c', REFILL, allocator.__file__], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    default_kept, applied, tuned_kept = out
    assert applied == 'True'
    assert int(default_kept) < BUFFER_KIB // 8 and int(tuned_kept) > BUFFER_KIB * 7 // 8, out
