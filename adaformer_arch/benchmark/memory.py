"""Peak memory of one inference.

CPU: each (network, size) is measured in its own fresh process (``utils.clean_processes``: forkserver, with
``adaformer_arch`` preloaded so that starting one is cheap; spawn where forkserver is missing), so no measurement
inherits memory that another network or size left in the allocator. The child applies the same allocator mode and
thread count, builds the network, runs one 16x16 forward (thread pools and library workspaces get created), then
records its resident set size, resets the kernel's peak-RSS mark (``5 > /proc/self/clear_refs``), runs one forward
at the measured size and reads the peak (``VmHWM``). Reported: peak minus the RSS before that forward, i.e. the
memory the forward itself needed (activations, workspaces, allocator overhead), without weights and runtime.

CUDA: in the benchmark process, ``torch.cuda.max_memory_allocated()`` during one forward minus the memory allocated
before it (tensors only; the caching allocator's reserve and the CUDA context are not counted).
"""
import multiprocessing.pool
import os
import signal
from typing import Optional

import torch
from torch import Tensor, nn

from ..utils.clean_processes import clean_context
from .allocator import apply_allocator
from .networks import build
from .options import NetworkSpec

WARM_SIZE = 16
METHOD_CPU = 'peak RSS (VmHWM) minus RSS before the forward, fresh process per network and size'
METHOD_CUDA = 'torch.cuda.max_memory_allocated minus memory_allocated before the forward'


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def _child_peak_rss(spec: NetworkSpec, scale: int, random_weights: bool, where: str, lq: Tensor, threads: int,
                    allocator_mode: str) -> int:
    """Runs in the fresh process; returns the peak RSS increase of one forward in bytes."""
    import adaformer_arch  # noqa: F401  (registers the arches under spawn)

    apply_allocator(allocator_mode)
    torch.set_num_threads(threads)
    net = build(spec, scale, random_weights, where)
    with torch.no_grad():
        net(lq[..., :WARM_SIZE, :WARM_SIZE].contiguous())
        before = _status_kib('VmRSS')
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        net(lq)
        peak = _status_kib('VmHWM')
    return max(0, peak - before) * 1024


def cpu_peak_memory(spec: NetworkSpec, scale: int, random_weights: bool, where: str, lq: Tensor, threads: int,
                    allocator_mode: str) -> Optional[int]:
    """Peak RSS increase in bytes of ``net(lq)`` measured in a fresh process; None where /proc is unavailable."""
    if not (os.path.exists('/proc/self/clear_refs') and os.path.exists('/proc/self/status')):
        return None
    with measuring_pool() as pool:
        return pool.apply(_child_peak_rss, (spec, scale, random_weights, where, lq, threads, allocator_mode))


def measuring_pool() -> multiprocessing.pool.Pool:
    """A one-process pool for one measurement. The child ignores SIGINT: a Ctrl-C in the terminal reaches the whole
    process group, and the bench (the parent) reports it once and ends the pool."""
    return clean_context().Pool(1, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN),
                                maxtasksperchild=1)


@torch.no_grad()
def cuda_peak_memory(net: nn.Module, lq: Tensor) -> int:
    """Peak bytes allocated by ``net(lq)`` on the current CUDA device beyond what was allocated before."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    net(lq)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def memory_method(device: torch.device) -> str:
    return METHOD_CUDA if device.type == 'cuda' else METHOD_CPU
