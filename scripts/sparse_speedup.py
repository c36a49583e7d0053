"""How much do halted tokens really save? Latency of the gathered-sparse path vs the masked-dense path.

Runs AdaFormer on one input at a target fraction of halted tokens (over all blocks) and times, interleaved round by
round: gathered-sparse (halted tokens skipped), masked-dense (everything computed, masks applied: same output) and
early exit off (no halting). With random weights the halting level is set through the confidence estimator's bias.

    python scripts/sparse_speedup.py --size 256 --target 0.7 --runs 5 [--weights PATH] [--json out.json]
"""
import argparse
import json
import platform
import statistics
from typing import Callable

import torch

from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.benchmark.runner import interleaved_rounds
from adaformer_arch.utils.allocator import tune_glibc_malloc
from adaformer_arch.utils.weights import load_weights


def halted_fraction(net: AdaFormer, x: torch.Tensor) -> float:
    with torch.no_grad():
        _, aux = net(x, return_aux=True)
    return torch.stack(aux['global_halted']).float().mean().item()


def calibrate(net: AdaFormer, x: torch.Tensor, target: float) -> float:
    """Bisect the estimator's output bias until the halted fraction is close to ``target``; returns it."""
    with torch.no_grad():
        net.adam.estimator.conv2.weight.mul_(20.0)  # make confidence vary across tokens
    lo, hi = -10.0, 10.0
    for _ in range(20):
        mid = (lo + hi) / 2
        torch.nn.init.constant_(net.adam.estimator.conv2.bias, mid)
        if halted_fraction(net, x) < target:
            lo = mid
        else:
            hi = mid
    return halted_fraction(net, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--size', type=int, default=256, help='LR side (square input)')
    parser.add_argument('--target', type=float, default=0.7, help='fraction of halted tokens (random weights)')
    parser.add_argument('--weights', help='BasicSR checkpoint; then --halt-eps sets halting instead of --target')
    parser.add_argument('--halt-eps', type=float, default=0.05)
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads())
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    tuned = tune_glibc_malloc()
    torch.manual_seed(0)
    net = AdaFormer(upscale=4).eval()
    x = torch.rand(1, 3, args.size, args.size)
    if args.weights:
        load_weights(net, args.weights)
        net.halt_eps = args.halt_eps
        halted = halted_fraction(net, x)
    else:
        halted = calibrate(net, x, args.target)

    def run(sparse: bool, early_exit: bool) -> Callable[[], None]:
        def fn() -> None:
            net.sparse_compute, net.early_exit = sparse, early_exit
            with torch.no_grad():
                net(x)
        return fn

    times, _ = interleaved_rounds({
        'sparse': run(True, True),
        'masked-dense': run(False, True),
        'no early exit': run(True, False),
    }, args.runs, args.warmup, torch.device('cpu'), lambda: None)
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {
        'command': 'python scripts/sparse_speedup.py ' + ' '.join(
            f'--{k.replace("_", "-")} {v}' for k, v in vars(args).items() if v is not None and k != 'json'),
        'machine': platform.processor() or platform.machine(), 'threads': args.threads, 'malloc_tuned': tuned,
        'size': args.size, 'halted_fraction': halted, 'median_s': median,
        'min_s': {k: min(v) for k, v in times.items()}, 'max_s': {k: max(v) for k, v in times.items()},
        'sparse_over_dense': median['sparse'] / median['masked-dense'],
    }
    print(f'LR {args.size}x{args.size}, {100 * halted:.1f} % of tokens halted over all blocks, '
          f'{args.threads} threads, median of {args.runs}')
    print('| path | median s | min s | max s |\n|---|---|---|---|')
    for name in times:
        print(f'| {name} | {median[name]:.3f} | {result["min_s"][name]:.3f} | {result["max_s"][name]:.3f} |')
    print(f'sparse / masked-dense latency: {result["sparse_over_dense"]:.3f}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
