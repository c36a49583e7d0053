"""glibc malloc tuning (adaformer_arch/utils/allocator.py): a freed large buffer stays in the process, so the next
one of that size costs no page faults. Counted in a fresh interpreter (the tuning is per process)."""
import os
import subprocess
import sys

import pytest

from adaformer_arch.utils import allocator

# With one 64 MiB tensor alive, allocates and frees a second one (it ends at the top of the heap, where glibc trims
# freed memory above the threshold), then counts the minor page faults of allocating and filling it again.
REFILL_FAULTS = '''
import resource
import torch
from adaformer_arch.utils.allocator import tune_glibc_malloc
print(tune_glibc_malloc())
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
kept = torch.ones(16 * 2**20)
buffer = torch.ones(16 * 2**20)
del buffer
before = faults()
buffer = torch.ones(16 * 2**20)
print(faults() - before)
'''

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc tuning is Linux-only')


def refill_faults(mode: str) -> int:
    env = dict(os.environ, ADAFORMER_MALLOC=mode)
    out = subprocess.run([sys.executable, '-c', REFILL_FAULTS], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    assert applied == str(mode == 'tuned')
    return int(faults)


def test_trim_threshold_fits_the_c_int_mallopt_takes():
    # ctypes masks a larger Python int to 32 bits without an error (1 << 34 became a threshold of 0).
    assert 0 < allocator.TRIM_THRESHOLD_BYTES <= allocator.INT_MAX


def test_tuned_malloc_reuses_a_freed_large_buffer_without_page_faults():
    pages = 64 * 2**20 // 4096
    assert refill_faults('default') > pages // 2  # glibc's default: the buffer went back to the kernel
    assert refill_faults('tuned') < pages // 16
