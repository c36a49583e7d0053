"""Timing: interleaved rounds of several networks (latency, training steps) and the float32 GEMM ceiling."""
import functools
import statistics
import time
from typing import Callable, Dict, List, Tuple

import torch
from torch import Tensor, nn

from ..utils.device_clock import sync


def round_order(names: List[str], round_index: int) -> List[str]:
    """The networks of one round, rotated by one place each round so that no network always runs after the
    same one (cache and frequency effects of a heavy predecessor average out)."""
    k = round_index % len(names)
    return names[k:] + names[:k]


def interleaved_rounds(tasks: Dict[str, Callable[[], object]], runs: int, warmup: int, device: torch.device,
                       step: Callable[[], None]) -> Tuple[Dict[str, List[float]], List[List[str]]]:
    """``warmup`` untimed rounds, then ``runs`` timed rounds; in each round every task runs once, in the order of
    :func:`round_order`.

    Returns the wall-clock seconds of every timed call per task (device synchronised before and after), and the
    order of every round (warm-up rounds first). ``step`` is called after every call (progress bar).
    """
    names = list(tasks)
    times: Dict[str, List[float]] = {name: [] for name in names}
    schedule = []
    for r in range(warmup + runs):
        order = round_order(names, r)
        schedule.append(order)
        for name in order:
            sync(device)
            start = time.perf_counter()
            tasks[name]()
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
            step()
    return times, schedule


@torch.no_grad()
def interleaved_latency(nets: Dict[str, nn.Module], lq: Tensor, runs: int, warmup: int, device: torch.device,
                        step: Callable[[], None]) -> Tuple[Dict[str, List[float]], List[List[str]]]:
    """:func:`interleaved_rounds` of one forward of each network on ``lq``."""
    return interleaved_rounds({name: functools.partial(net, lq) for name, net in nets.items()}, runs, warmup, device,
                              step)


def summarise(seconds: List[float]) -> Dict[str, float]:
    """Median, min and max in milliseconds, and every run."""
    ms = [s * 1000.0 for s in seconds]
    return {'median': statistics.median(ms), 'min': min(ms), 'max': max(ms), 'runs_ms': ms}


@torch.no_grad()
def gemm_gflops(n: int, device: torch.device, reps: int = 5) -> Dict[str, float]:
    """float32 ``torch.mm`` of two (n, n) matrices: best and median GFLOP/s (2 n^3 FLOPs) over ``reps`` runs after
    one warm-up; the best is the ceiling the networks' achieved GFLOP/s are compared with."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=gen).to(device)
    b = torch.rand(n, n, generator=gen).to(device)
    torch.mm(a, b)
    rates = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        rates.append(2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    return {'size': n, 'reps': reps, 'gflops_best': max(rates), 'gflops_median': statistics.median(rates)}
