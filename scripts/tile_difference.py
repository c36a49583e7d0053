"""How far ``basicsr infer --tile N`` is from the whole-image result, with the trained weights.

Tiles are stitched from their middles (``adaformer_arch.utils.tiling``), so the convolutions see enough context; but
the global branch of every block gathers its prototypes from the tokens of one tile, not of the whole image, and
halting follows the confidences of that tile. So tiled and whole-image outputs differ a little. Per tile size this
prints, over the 8-bit output values: the largest difference, the mean absolute difference, the share of values that
differ by more than one level, and the PSNR of the tiled output against the whole-image one.

    python scripts/tile_difference.py [--input demo/Set5/HR/baby.png] [--tiles 256 128 64] [--overlap 32] [--json F]
"""
import argparse
import json
import math
import shlex
import sys
from typing import Dict, List

import numpy as np
import torch

import adaformer_arch  # noqa: F401
from basicsr.utils import tensor2img
from adaformer_arch.archs.adaformer_arch import AdaFormer
from adaformer_arch.benchmark.report import markdown_table
from adaformer_arch.cli import positive_int
from adaformer_arch.infer import InferError, tile_settings
from adaformer_arch.utils.allocator import tune_glibc_malloc
from adaformer_arch.utils.image_io import read_image
from adaformer_arch.utils.tiling import run_tiled
from adaformer_arch.utils.weights import load_weights


def to_levels(sr: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float output -> (H, W, 3) 8-bit levels (BasicSR's ``tensor2img``, as an 8-bit image is written),
    as signed integers so that they can be subtracted."""
    return tensor2img(sr).astype(np.int16)


def compare(tiled: np.ndarray, whole: np.ndarray) -> Dict[str, float]:
    """Two (H, W, 3) level arrays -> largest and mean absolute difference, share of values off by more than one
    level (%), and PSNR of ``tiled`` against ``whole`` (inf when equal)."""
    diff = np.abs(tiled - whole)
    mse = float(np.mean(diff.astype(np.float64)**2))
    return {'max_levels': int(diff.max()), 'mean_abs_levels': float(diff.mean()),
            'over_1_level_percent': 100.0 * float(np.mean(diff > 1)),
            'psnr_vs_whole_db': math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--weights', default='experiments/pretrained_models/AdaFormer_x4_cpu.pth')
    parser.add_argument('--input', default='demo/Set5/HR/baby.png', help='LR input image (any size)')
    parser.add_argument('--tiles', type=positive_int, nargs='+', default=[256, 128, 64],
                        help='tile sizes (LR pixels, multiples of the window size)')
    parser.add_argument('--overlap', type=int, help='overlap of the tiles (default: that of basicsr infer)')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', help='write the numbers here')
    args = parser.parse_args()
    tune_glibc_malloc()
    torch.set_num_threads(args.threads)
    net = AdaFormer(upscale=4)
    load_weights(net, args.weights)
    net.eval()
    settings = []  # (tile, overlap), checked and defaulted as basicsr infer --tile --tile-overlap does
    for size in args.tiles:
        try:
            settings.append(tile_settings(argparse.Namespace(tile=size, tile_overlap=args.overlap), net.window_size))
        except InferError as err:
            parser.error(str(err))
    image, _ = read_image(args.input)
    lq = torch.from_numpy(np.ascontiguousarray(image[:, :, ::-1])).permute(2, 0, 1)[None]  # BGR -> RGB
    with torch.inference_mode():
        whole = to_levels(net(lq))
        rows: List[Dict] = []
        for tile, overlap in settings:
            sr, _ = run_tiled(lambda x: (net(x), {}), lq, net.upscale, tile, overlap, torch.device('cpu'))
            rows.append(dict(tile=tile, overlap=overlap, **compare(to_levels(sr), whole)))
    height, width = lq.shape[-2:]
    print(f'basicsr infer --tile N against the whole image: {args.input} ({width}x{height} LR) x4, {args.weights}')
    print(markdown_table(['tile', 'overlap', 'max difference (levels)', 'mean abs. difference',
                          'values off by > 1 level %', 'PSNR vs whole dB'],
                         [[str(r['tile']), str(r['overlap']), str(r['max_levels']), f"{r['mean_abs_levels']:.3f}",
                           f"{r['over_1_level_percent']:.3f}", f"{r['psnr_vs_whole_db']:.2f}"] for r in rows]))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'command': 'python ' + shlex.join(sys.argv), 'input': args.input, 'weights': args.weights,
                       'lr_size': [width, height], 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
