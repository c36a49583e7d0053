"""Executed MACs per LR pixel of AdaFormer x4 (``aux['macs']``), dense and with early exit, on one input size.

    python scripts/macs_per_pixel.py [--width 960 --height 540] [--weights PATH] [--input IMAGE] [--json FILE]

The paper's Table 3 counts FLOPs as MACs and leaves the confidence estimator out; ``aux['macs']`` includes it.
"""
import argparse
import json
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.utils.allocator import tune_glibc_malloc
from adaformer_arch.utils.weights import load_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--width', type=int, default=960)
    parser.add_argument('--height', type=int, default=540)
    parser.add_argument('--weights', help='weights file (default: random weights; MACs of the dense path do not '
                        'depend on them)')
    parser.add_argument('--input', help='LR image, repeated (tiled) to the size (default: random pixels)')
    parser.add_argument('--json', type=Path, help='also write the result, with this command, to this file')
    args = parser.parse_args()
    tune_glibc_malloc()
    torch.manual_seed(0)
    net = AdaFormer(upscale=4).eval()
    if args.weights:
        load_weights(net, args.weights)
    if args.input:
        img = cv2.imread(args.input, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float32) / 255.0
        reps = (args.height // img.shape[0] + 1, args.width // img.shape[1] + 1, 1)
        img = np.tile(img, reps)[:args.height, :args.width]
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    else:
        x = torch.rand(1, 3, args.height, args.width)
    pixels = args.width * args.height
    result = {'command': 'python ' + shlex.join(sys.argv),
              'size': [args.width, args.height], 'weights': args.weights, 'input': args.input}
    for label, early_exit in (('dense', False), ('early_exit', True)):
        net.early_exit = early_exit
        with torch.no_grad():
            _, aux = net(x, return_aux=True)
        result[label] = {'macs': aux['macs'], 'macs_per_lr_pixel': aux['macs'] / pixels,
                         'halted_fraction': torch.stack(aux['global_halted']).float().mean().item()}
        print(f'{label}: {aux["macs"] / 1e9:.1f} GMACs, {aux["macs"] / pixels / 1e6:.3f} M MACs per LR pixel, '
              f'{100 * result[label]["halted_fraction"]:.1f} % tokens halted over all blocks')
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + '\n')


if __name__ == '__main__':
    main()
