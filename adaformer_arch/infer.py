"""`basicsr infer`: super-resolve your own images (no ground truth) with AdaFormer.

Usage::

    basicsr infer -i photo.jpg -o results/               # -> results/photo_x4.png
    basicsr infer -i folder/ -o results/ --tile 256       # bounded memory on 4K/8K inputs
    basicsr infer -i folder/ -o results/ --save-maps      # also <stem>_depth.png, <stem>_confidence.png
    basicsr infer -i folder/ -o results/ --dtype bfloat16  # faster on CPUs with AVX512-BF16/AMX, and GPUs
    basicsr infer -i x.png -o out/ --opt options/train_adaformer_x2.yml --weights net_g_x2.pth

Outputs: OUT/<stem>_x<scale>.png; with --save-maps also OUT/<stem>_depth.png (how many blocks each token went
through) and OUT/<stem>_confidence.png (confidence averaged over the blocks), both at the SR size.
Each output keeps the input's mode: greyscale stays greyscale, 16-bit stays 16-bit, RGBA keeps its alpha (upscaled
bicubically). Files that cannot be read are reported by name and skipped. Exit code: 0 all done, 1 some images
failed (listed at the end), 2 bad options, weights or input path.

--tile: the image is processed in overlapping tiles of N x N LR pixels and stitched by cropping each overlap in its
middle; the halting maps (--save-maps) are stitched the same way. Tiling changes the result slightly: AdaFormer's
global (prototype) attention then sees one tile instead of the whole image, and pixels near a cut have ~overlap/2
pixels of context instead of the whole image.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
import yaml
from torch import Tensor
from tqdm import tqdm

from basicsr.utils import img2tensor, scandir, tensor2img
from basicsr.utils.registry import ARCH_REGISTRY

from .archs.adaformer_arch import AdaFormer
from .cli import positive_int
from .option_checks import problems_message
from .option_checks.network import check_constructor, check_scale
from .utils.allocator import tune_glibc_malloc
from .utils.halting_maps import confidence_to_png, depth_to_png, halting_maps
from .utils.image_io import IMAGE_EXTENSIONS, ImageReadError, read_image, write_array, write_image
from .utils.output_folder import folder_problem
from .utils.precision import DTYPES, check_device, forward_in_own_dtype
from .utils.tiling import run_tiled, tile_count
from .utils.weights import WeightsError, WeightsMismatchError, load_weights

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WEIGHTS = REPO_ROOT / 'experiments' / 'pretrained_models' / 'AdaFormer_x4_cpu.pth'
DEFAULT_SCALE = 4
MAX_DEFAULT_OVERLAP = 32


class InferError(Exception):
    """A problem with the command line or its files that stops the whole run (exit code 2)."""


@dataclass
class Failure:
    path: str
    reason: str


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='basicsr infer', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('-i', '--input', required=True, help='an image file, or a folder of images (not recursive)')
    parser.add_argument('-o', '--output', required=True, help='output folder (created if missing)')
    parser.add_argument('--weights', help=f'BasicSR weights file (params_ema preferred, else params). Default: '
                                          f'path.pretrain_network_g of --opt (with its param_key_g, params if '
                                          f'unset, as basicsr test reads it), else {DEFAULT_WEIGHTS} (x4)')
    parser.add_argument('-opt', '--opt', help='BasicSR option file whose network_g (type AdaFormer) defines the '
                                             'network (-opt as in basicsr train/test); default: '
                                             'AdaFormer(upscale=SCALE) with its default width/depth')
    parser.add_argument('--scale', type=positive_int,
                        help=f'upscaling factor (default: network_g.upscale of --opt, else {DEFAULT_SCALE})')
    parser.add_argument('--halt-eps', type=float, help='halting threshold epsilon_h in [0, 1) (default: the '
                                                       "network's, 0.05); larger = more tokens exit early")
    parser.add_argument('--no-early-exit', action='store_true', help='run every token through every block')
    parser.add_argument('--tile', type=int, help='process LR tiles of N x N pixels (N a multiple of the window size, '
                                                 'e.g. 256) to bound memory; default: whole image at once')
    parser.add_argument('--tile-overlap', type=int,
                        help=f'overlap of neighbouring tiles in LR pixels (default: min({MAX_DEFAULT_OVERLAP}, '
                             f'TILE/2)); raised where needed so that TILE - overlap is a multiple of the window size, '
                             f'which keeps every tile on the whole image\'s window grid')
    parser.add_argument('--save-maps', action='store_true', help='also write halting-depth and confidence PNGs')
    parser.add_argument('--device', choices=('auto', 'cpu', 'cuda'), default='auto',
                        help='auto = cuda if available, else cpu (default: auto)')
    parser.add_argument('--dtype', choices=tuple(DTYPES), default='float32',
                        help='precision of the network: bfloat16 is faster on CPUs with AVX512-BF16 or AMX and on '
                             'GPUs (speed and PSNR: README, "Inference knobs"); float16 for GPUs (default: float32)')
    return parser.parse_args(argv)


def network_options(args: argparse.Namespace) -> Tuple[Dict, Optional[str], Optional[str], str]:
    """-> (network_g, weights path or None, param_key or None, where the network came from)."""
    if args.opt is None:
        return {'type': 'AdaFormer', 'upscale': args.scale or DEFAULT_SCALE}, args.weights, None, 'default AdaFormer'
    try:
        with open(args.opt, encoding='utf-8') as f:
            opt = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        raise InferError(f'cannot read option file {args.opt}: {err}') from None
    network_g = dict((opt or {}).get('network_g') or {})
    if network_g.get('type') != 'AdaFormer':
        raise InferError(f'{args.opt}: network_g.type must be AdaFormer (got {network_g.get("type")!r})')
    upscale = network_g.get('upscale', DEFAULT_SCALE)
    # as basicsr test checks them (misspelt or wrongly typed arguments); scale only where the file has one: an
    # option file for infer alone may leave it out
    problems = check_constructor('network_g', network_g, ARCH_REGISTRY, 'network')
    problems += check_scale(opt) if 'scale' in opt else []
    if problems:
        raise InferError(problems_message(args.opt, problems))
    given = (f'network_g.upscale={upscale} in {args.opt}' if 'upscale' in network_g else
             f"AdaFormer's default upscale={upscale} (network_g of {args.opt} sets none)")
    if args.scale is not None and args.scale != upscale:
        raise InferError(f'--scale {args.scale} disagrees with {given}; drop --scale or use an option file for '
                         f'x{args.scale}')
    network_g['upscale'] = upscale
    path_opt = opt.get('path') or {}
    weights = args.weights or path_opt.get('pretrain_network_g')
    param_key = None if args.weights else path_opt.get('param_key_g', 'params')  # as basicsr test reads the file
    return network_g, weights, param_key, f'network_g of {args.opt}'


def build_network(args: argparse.Namespace, device: torch.device) -> AdaFormer:
    """AdaFormer with its weights loaded, halting settings applied, in eval mode on ``device``."""
    if args.halt_eps is not None and not 0.0 <= args.halt_eps < 1.0:
        raise InferError(f'--halt-eps must be in [0, 1), got {args.halt_eps}')
    network_g, weights, param_key, source = network_options(args)
    kwargs = {k: v for k, v in network_g.items() if k != 'type'}
    try:
        net = AdaFormer(**kwargs)
    except (TypeError, ValueError) as err:
        raise InferError(f'bad AdaFormer arguments ({source}): {err}') from None
    if net.conv_first.in_channels != 3 or net.conv_up.out_channels != 3 * net.upscale**2:
        raise InferError(f'{source}: basicsr infer needs a network with 3 input and 3 output channels')
    if weights is None:
        if net.upscale != DEFAULT_SCALE:
            raise InferError(f'no default weights for x{net.upscale} (the shipped ones are x{DEFAULT_SCALE}); pass '
                             f'--weights PATH')
        weights = str(DEFAULT_WEIGHTS)
        if not DEFAULT_WEIGHTS.is_file():
            raise InferError(
                f'default weights {DEFAULT_WEIGHTS} not found (not shipped with this copy yet). Pass --weights PATH, '
                f'e.g. experiments/<name>/models/net_g_latest.pth from `basicsr train -opt '
                f'options/train_adaformer_x4_cpu.yml`')
    desc = f'AdaFormer({", ".join(f"{k}={v}" for k, v in kwargs.items())}) from the {source}'
    try:
        entry = load_weights(net, weights, param_key, network_desc=desc)
    except WeightsError as err:
        mismatch = isinstance(err, WeightsMismatchError)
        hint = ('\nIf the checkpoint is for another scale or width, pass --scale or --opt with the network_g it was '
                'trained with.' if mismatch and not args.opt else '')
        raise InferError(f'{err}{hint}') from None
    print(f'basicsr infer: weights {weights}' + (f", entry '{entry}'" if entry else ' (a plain state dict)'),
          file=sys.stderr)
    if args.halt_eps is not None:
        net.halt_eps = args.halt_eps
    if args.no_early_exit:
        net.early_exit = False
    dtype = DTYPES[args.dtype]
    try:
        check_device(dtype, device)
    except ValueError as err:
        raise InferError(f'--dtype {args.dtype}: {err}') from None
    return net.eval().to(device, dtype)


def choose_device(name: str) -> torch.device:
    if name == 'cuda' and not torch.cuda.is_available():
        raise InferError('--device cuda: no CUDA device is available; use --device cpu')
    if name == 'auto':
        name = 'cuda' if torch.cuda.is_available() else 'cpu'
    return torch.device(name)


def tile_settings(args: argparse.Namespace, window_size: int) -> Tuple[Optional[int], int]:
    """-> (tile or None, overlap), validated against the window size.

    The overlap is raised where needed so that ``tile - overlap`` (the step between tile starts) is a multiple of
    the window: then every tile, the last one at the right/bottom border included, has the whole image's window
    grid and border padding. A misaligned step (default overlap 20 for ``--tile 40``) changed the last LR rows or
    columns by about 3 levels on average (demo baby image, 41x48 crop), 0.2 once aligned. Steps shorter than a
    window stay as they are (more context matters more there).
    """
    if args.tile is None:
        if args.tile_overlap is not None:
            raise InferError('--tile-overlap needs --tile')
        return None, 0
    if args.tile <= 0 or args.tile % window_size:
        raise InferError(f'--tile {args.tile}: must be a positive multiple of the window size {window_size} '
                         f'(e.g. {max(window_size, args.tile // window_size * window_size)})')
    overlap = min(MAX_DEFAULT_OVERLAP, args.tile // 2) if args.tile_overlap is None else args.tile_overlap
    if not 0 <= overlap < args.tile:
        raise InferError(f'--tile-overlap {overlap}: must be in [0, --tile) = [0, {args.tile})')
    step = args.tile - overlap
    if step >= window_size:
        overlap = args.tile - step // window_size * window_size
    return args.tile, overlap


def list_inputs(path: str) -> Tuple[List[str], List[str]]:
    """-> (image files to process, files in the folder ignored because of their extension)."""
    if os.path.isfile(path):
        return [path], []
    if not os.path.isdir(path):
        raise InferError(f'input {path} does not exist')
    names = sorted(n for n in scandir(path) if os.path.isfile(os.path.join(path, n)))
    images = [os.path.join(path, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    ignored = [n for n in names if not n.lower().endswith(IMAGE_EXTENSIONS)]
    if not images:
        raise InferError(f'no images in {path} (extensions: {" ".join(IMAGE_EXTENSIONS)})')
    return images, ignored


def forward_with_maps(net: AdaFormer, lq: Tensor, maps: bool) -> Tuple[Tensor, Dict[str, Tensor]]:
    """(B, 3, h, w) -> (sr (B, 3, h*s, w*s), {} or {'depth': (B, 1, h, w) float, 'confidence': (B, 1, h, w)}), in
    float32 whatever the network's precision."""
    if not maps:
        return forward_in_own_dtype(net, lq), {}
    sr, aux = forward_in_own_dtype(net, lq, return_aux=True)
    return sr, halting_maps(aux, *lq.shape[-2:])


def save_maps(out_dir: str, stem: str, maps: Dict[str, Tensor], num_blocks: int, size: Tuple[int, int]) -> None:
    """Colour PNGs of the (1, 1, h, w) maps, upscaled (nearest) to ``size`` = (H, W) of the SR output."""
    depth = depth_to_png(maps['depth'][0, 0].round().int().numpy(), num_blocks)
    confidence = confidence_to_png(maps['confidence'][0, 0].numpy())
    for suffix, image in (('depth', depth), ('confidence', confidence)):
        image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
        write_array(os.path.join(out_dir, f'{stem}_{suffix}.png'), image)


def process(path: str, net: AdaFormer, args: argparse.Namespace, device: torch.device, tile: Optional[int],
            overlap: int, out_name: str) -> None:
    """Super-resolve one file into ``args.output/<out_name>.png`` (and its maps)."""
    img, info = read_image(path)
    lq = img2tensor(img, bgr2rgb=True, float32=True).unsqueeze(0)  # (1, 3, h, w) RGB in [0, 1]
    with torch.inference_mode():
        if tile is None:
            sr, maps = forward_with_maps(net, lq.to(device), args.save_maps)
            sr, maps = sr.cpu(), {k: v.cpu() for k, v in maps.items()}
        else:
            h, w = lq.shape[-2:]
            with tqdm(total=tile_count(h, w, tile, overlap), desc=os.path.basename(path), unit='tile', leave=False,
                      disable=None) as bar:
                sr, maps = run_tiled(lambda x: forward_with_maps(net, x, args.save_maps), lq, net.upscale, tile,
                                     overlap, device, progress=lambda: bar.update(1))
    out = tensor2img(sr, rgb2bgr=True, out_type=np.float32, min_max=(0, 1))  # (H, W, 3) BGR in [0, 1]
    write_image(os.path.join(args.output, f'{out_name}.png'), out, info)
    if args.save_maps:
        save_maps(args.output, os.path.splitext(os.path.basename(path))[0], maps, len(net.adam.blocks),
                  out.shape[:2])


def try_process(path: str, net: AdaFormer, args: argparse.Namespace, device: torch.device, tile: Optional[int],
                overlap: int, out_name: str) -> Optional[str]:
    """:func:`process`; -> None on success, else why this file failed (unreadable, out of memory, unwritable)."""
    try:
        process(path, net, args, device, tile, overlap, out_name)
    except ImageReadError as err:
        return str(err)
    except OSError as err:
        return f'cannot write its output: {err}'
    except RuntimeError as err:
        if not is_out_of_memory(err):
            raise
        why = f'out of memory ({err}); use --tile 256 (or smaller)'
    else:
        return None
    # give the failed image's cached blocks back before the next one; only here, after the handler: the error's
    # traceback holds the failed forward's frames, and with them its tensors, until the handler ends
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return why


def is_out_of_memory(err: RuntimeError) -> bool:
    """A GPU's ``torch.OutOfMemoryError``, or the CPU allocator's failure (a plain RuntimeError). Not any error that
    mentions memory: after "CUDA error: an illegal memory access" the CUDA context is lost, and calling every
    following image out of memory (use --tile) would hide that."""
    return isinstance(err, torch.OutOfMemoryError) or "DefaultCPUAllocator: can't allocate memory" in str(err)


def run(args: argparse.Namespace) -> List[Failure]:
    problem = folder_problem(args.output)
    if problem:
        raise InferError(f'cannot create the output folder {args.output} ({problem}); choose another -o')
    if os.path.isdir(args.input) and os.path.realpath(args.input) == os.path.realpath(args.output):
        raise InferError(f'-o {args.output} is the input folder: the outputs would sit among the inputs, and the '
                         'next run would super-resolve them too; choose another -o')
    device = choose_device(args.device)
    net = build_network(args, device)
    tile, overlap = tile_settings(args, net.window_size)
    files, ignored = list_inputs(args.input)
    if ignored:
        print(f'ignoring {len(ignored)} file(s) without an image extension in {args.input}: {", ".join(ignored)}',
              file=sys.stderr)
    os.makedirs(args.output, exist_ok=True)
    failures: List[Failure] = []
    taken: Dict[str, str] = {}
    for path in tqdm(files, desc='basicsr infer', unit='img', disable=None):
        out_name = f'{os.path.splitext(os.path.basename(path))[0]}_x{net.upscale}'
        if out_name in taken:
            reason = f'its output {out_name}.png would overwrite that of {taken[out_name]}; rename one of them'
        else:
            taken[out_name] = path
            reason = try_process(path, net, args, device, tile, overlap, out_name)
        if reason is not None:
            failures.append(Failure(path, reason))
            tqdm.write(f'FAILED {path}: {reason}', file=sys.stderr)
    done = len(files) - len(failures)
    print(f'basicsr infer: {done} of {len(files)} image(s) super-resolved x{net.upscale} into {args.output}, '
          f'{len(failures)} failed' + (': ' + ', '.join(f.path for f in failures) if failures else ''))
    return failures


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tune_glibc_malloc()
    try:
        failures = run(args)
    except InferError as err:
        print(f'basicsr infer: error: {err}', file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if failures else 0)


if __name__ == '__main__':
    main()
