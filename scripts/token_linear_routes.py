"""The routes of ``archs/token_linear.py`` side by side: why the inference path's token linears are 1x1 convolutions
over 16 one-row images.

1. One layer, 4096 tokens: ``F.linear`` (BLAS GEMM), the 1x1 convolution over the tokens as one image, and as
   ``CONV_BATCH`` images (PyTorch sends a 1x1 convolution of fewer than 16 images on one thread to its slow generic
   path, otherwise to oneDNN). Median of ``--calls`` calls after a warm-up, per thread count.
2. With ``--adam``, on one thread (the only case where ``token_linear`` uses ``CONV_BATCH`` images): AdaM alone with
   the trained weights on the demo image tiled to ``--size``, early exit on and off, ``token_linear.CONV_BATCH``
   switched between 1 and its value round by round in one process: median times and the median per-round ratio.

    python scripts/token_linear_routes.py [--threads 1 2] [--calls 200] [--adam --size 480x270 --rounds 4] [--json F]
"""
import argparse
import json
import shlex
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch
from torch.nn import functional as F

from adaformer_arch.archs import token_linear
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.archs.token_linear import as_convolution
from adaformer_arch.benchmark.report import markdown_table
from adaformer_arch.benchmark.inputs import load_image, lr_input
from adaformer_arch.utils.allocator import tune_glibc_malloc
from adaformer_arch.utils.weights import load_weights

LAYERS = ((64, 192), (64, 64), (64, 128), (128, 64))  # a TSAB's qkv, projections, MLP in and out


def median_us(fn: Callable[[], torch.Tensor], calls: int) -> float:
    for _ in range(20):
        fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times)


def layer_rows(threads: List[int], calls: int) -> List[Dict]:
    rows = []
    with torch.no_grad():
        for count in threads:
            torch.set_num_threads(count)
            for c_in, c_out in LAYERS:
                x, weight, bias = torch.randn(4096, c_in), torch.randn(c_out, c_in), torch.randn(c_out)
                routes = {'linear': lambda: F.linear(x, weight, bias),
                          'conv, 1 image': lambda: as_convolution(x, weight, bias, 1),
                          f'conv, {token_linear.CONV_BATCH} images':
                              lambda: as_convolution(x, weight, bias, token_linear.CONV_BATCH)}
                rows.append({'threads': count, 'layer': f'{c_in}->{c_out}',
                             **{name: median_us(fn, calls) for name, fn in routes.items()}})
    return rows


def adam_rows(size: str, rounds: int) -> List[Dict]:
    width, height = (int(v) for v in size.lower().split('x'))
    net = AdaFormer(upscale=4)
    load_weights(net, 'experiments/pretrained_models/AdaFormer_x4_cpu.pth')
    net.eval()
    lq = lr_input((width, height), load_image('demo/Set5/LR_bicubic/X4/baby.png'))
    shipped = token_linear.CONV_BATCH
    torch.set_num_threads(1)
    times: Dict = {(batch, exit_): [] for batch in (1, shipped) for exit_ in (True, False)}
    with torch.inference_mode():
        _, feat = net.encode(lq)
        for round_ in range(rounds + 1):  # round 0 warms up
            for batch, early_exit in (list(times) if round_ % 2 else list(times)[::-1]):
                token_linear.CONV_BATCH = batch
                start = time.perf_counter()
                net.adam(feat.clone(), early_exit, net.halt_eps, True, False)
                if round_:
                    times[(batch, early_exit)].append(time.perf_counter() - start)
    token_linear.CONV_BATCH = shipped
    rows = []
    for early_exit in (True, False):
        one, many = times[(1, early_exit)], times[(shipped, early_exit)]
        rows.append({'threads': 1, 'size': size, 'early_exit': early_exit, 'rounds': rounds,
                     'ms_1_image': 1e3 * statistics.median(one), f'ms_{shipped}_images': 1e3 * statistics.median(many),
                     'ratio_median': statistics.median(b / a for a, b in zip(one, many))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--calls', type=int, default=200)
    parser.add_argument('--adam', action='store_true', help='also time AdaM with both batch layouts')
    parser.add_argument('--size', default='480x270', help='LR width x height of the AdaM run')
    parser.add_argument('--rounds', type=int, default=8)
    parser.add_argument('--json', help='write the numbers here')
    args = parser.parse_args()
    tune_glibc_malloc()
    layers = layer_rows(args.threads, args.calls)
    print(f'One layer, 4096 tokens, median of {args.calls} calls, microseconds')
    names = [k for k in layers[0] if k not in ('threads', 'layer')]
    print(markdown_table(['threads', 'layer', *names],
                         [[str(r['threads']), r['layer'], *(f'{r[n]:.0f}' for n in names)] for r in layers]))
    adam = adam_rows(args.size, args.rounds) if args.adam else []
    if adam:
        batch = token_linear.CONV_BATCH
        print(f'\nAdaM at LR {args.size}, one thread, trained weights, CONV_BATCH 1 vs {batch} alternated round by '
              'round')
        print(markdown_table(['threads', 'early exit', '1 image ms', f'{batch} images ms', 'per-round ratio (median)'],
                             [[str(r['threads']), str(r['early_exit']), f"{r['ms_1_image']:.1f}",
                               f"{r[f'ms_{batch}_images']:.1f}", f"{r['ratio_median']:.3f}"] for r in adam]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'command': 'python ' + shlex.join(sys.argv), 'layers': layers, 'adam': adam,
                       'torch': torch.__version__}, f, indent=1)


if __name__ == '__main__':
    main()
