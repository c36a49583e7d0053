"""Where AdaM's time goes with and without early exit: per-block latency next to the work each block computes.

Runs the trained AdaFormer's encoder once on a real LR image mirror-tiled to ``--size``, then times AdaM alone
(the 6 TSABs, the confidence estimator, the 1x1 convs) with early exit on and off, interleaved round by round, on the
inference path (eval, no autograd). Per block: the fraction of tokens kept by the global branch, of windows kept by
the local branch, of tokens the block computes at all (kept windows whole plus the global branch's tokens in halted
windows), and the median time with and without early exit. A block whose time ratio stays close to its computed
fraction skips halted tokens at (almost) no cost; what early exit adds on top is the estimator.

``--profile N`` adds, for both modes, the N operators with the most self time in one more AdaM forward under
``torch.profiler`` (milliseconds of that forward; the profiler adds a little overhead per call): what kind of work
the time goes to (token linears run as ``mkldnn_convolution``, see ``archs/token_linear.py``).

    python scripts/block_times.py [--size 480x270] [--runs 7] [--threads 2] [--profile 12] [--json out.json]
"""
import argparse
import collections
import functools
import json
import platform
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
from torch import nn

from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.benchmark.inputs import load_image, lr_input
from adaformer_arch.benchmark.report import markdown_table
from adaformer_arch.utils.allocator import tune_glibc_malloc
from adaformer_arch.utils.halting_maps import window_to_pixels
from adaformer_arch.utils.weights import load_weights


def timed(module: nn.Module, method: str, key: str, log: Dict[str, List[float]]) -> None:
    """Replace ``module.method`` by a wrapper that appends its wall time to ``log[key]``."""
    inner: Callable = getattr(module, method)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        result = inner(*args, **kwargs)
        log[key].append(time.perf_counter() - start)
        return result

    setattr(module, method, wrapper)


def operator_profile(forward: Callable[[], object], top: int) -> List[Dict[str, object]]:
    """The ``top`` operators by self CPU time in one call of ``forward``: name, calls, self ms, share of the total."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        forward()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{'op': e.key, 'calls': e.count, 'self_ms': e.self_cpu_time_total / 1e3,
             'share': e.self_cpu_time_total / total} for e in ranked]


def computed_fraction(local_halted: torch.Tensor, global_halted: torch.Tensor, window: int) -> float:
    """Tokens a block computes: every token of a kept window, plus the global branch's tokens in halted windows."""
    window_open = window_to_pixels(~local_halted, window)
    return (window_open | ~global_halted).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='experiments/pretrained_models/AdaFormer_x4_cpu.pth')
    parser.add_argument('--input', default='demo/Set5/LR_bicubic/X4/baby.png')
    parser.add_argument('--size', default='480x270', help='LR width x height')
    parser.add_argument('--runs', type=int, default=7)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='also list the N operators with the most self time, per mode')
    parser.add_argument('--json', help='write the numbers here')
    args = parser.parse_args()
    tune_glibc_malloc()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split('x'))

    net = AdaFormer(upscale=4)
    load_weights(net, args.weights)
    net.eval()
    adam = net.adam
    lq = lr_input((width, height), load_image(args.input))
    log: Dict[str, List[float]] = collections.defaultdict(list)
    for i, block in enumerate(adam.blocks):
        timed(block, 'forward_inference', f'block {i + 1}', log)
    timed(adam.estimator, 'forward', 'estimator', log)
    timed(adam.estimator, 'forward_windows', 'estimator', log)

    with torch.inference_mode():
        _, feat = net.encode(lq)
        _, aux = adam(feat.clone(), True, net.halt_eps, True, False)
        per_mode: Dict[bool, Dict[str, List[float]]] = {True: collections.defaultdict(list),
                                                         False: collections.defaultdict(list)}
        for round_ in range(args.runs + 1):  # round 0 warms up
            for early_exit in (round_ % 2 == 0, round_ % 2 == 1):
                log.clear()
                start = time.perf_counter()
                adam(feat.clone(), early_exit, net.halt_eps, True, False)
                total = time.perf_counter() - start
                if round_:
                    per_mode[early_exit]['AdaM'].append(total)
                    for key, values in log.items():
                        per_mode[early_exit][key].append(sum(values))
        profiles = {mode: operator_profile(functools.partial(adam, feat.clone(), early_exit, net.halt_eps, True, False),
                                           args.profile)
                    for mode, early_exit in (('early_exit', True), ('no_exit', False)) if args.profile}

    def ms(early_exit: bool, key: str) -> float:
        values = per_mode[early_exit].get(key)
        return 1e3 * statistics.median(values) if values else 0.0

    rows = []
    for i in range(len(adam.blocks)):
        local_halted, global_halted = aux['local_halted'][i], aux['global_halted'][i]
        rows.append({'name': f'block {i + 1}',
                     'global_kept': 1 - global_halted.float().mean().item(),
                     'local_kept': 1 - local_halted.float().mean().item(),
                     'computed': computed_fraction(local_halted, global_halted, net.window_size),
                     'early_exit_ms': ms(True, f'block {i + 1}'), 'no_exit_ms': ms(False, f'block {i + 1}')})
    for key in ('estimator', 'AdaM'):
        rows.append({'name': key, 'early_exit_ms': ms(True, key), 'no_exit_ms': ms(False, key)})
    halted = torch.stack(aux['global_halted']).float().mean().item()

    print(f'AdaM at LR {width}x{height}, {args.threads} threads, median of {args.runs} interleaved runs; '
          f'halted tokens s = {100 * halted:.1f} % (bound on the AdaM time ratio: 1 - 0.7 s = {1 - 0.7 * halted:.3f})')
    print('| part | global kept % | local kept % | computed % | early exit ms | no-exit ms | ratio |')
    print('|---|---|---|---|---|---|---|')
    for r in rows:
        kept = (f"{100 * r['global_kept']:.0f} | {100 * r['local_kept']:.0f} | {100 * r['computed']:.0f}"
                if 'computed' in r else '- | - | -')
        ratio = f"{r['early_exit_ms'] / r['no_exit_ms']:.3f}" if r['no_exit_ms'] else '-'
        print(f"| {r['name']} | {kept} | {r['early_exit_ms']:.1f} | {r['no_exit_ms']:.1f} | {ratio} |")
    for mode, ops in profiles.items():
        print(f'\nAdaM {mode.replace("_", " ")}, one forward under torch.profiler: '
              f'top {len(ops)} operators by self time')
        print(markdown_table(['operator', 'calls', 'self ms', 'share %'],
                             [[op['op'], str(op['calls']), f"{op['self_ms']:.1f}", f"{100 * op['share']:.1f}"]
                              for op in ops]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'command': 'python ' + shlex.join(sys.argv), 'size': args.size, 'threads': args.threads,
                       'runs': args.runs, 'weights': args.weights, 'input': args.input, 'halted_fraction': halted,
                       'machine': platform.processor(), 'torch': torch.__version__, 'rows': rows, 'profiles': profiles}, f, indent=1)


if __name__ == '__main__':
    main()
