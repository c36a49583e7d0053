"""`basicsr prepare`: make the data sets of docs/datasets.md from downloaded images.

Usage::

    basicsr prepare div2k --hr DIV2K_train_HR --out datasets/DIV2K [--scales 2 3 4] [--lmdb] [--workers N]
    basicsr prepare div2k --hr DIV2K_valid_HR --out datasets/DIV2K --split valid --scales 4
    basicsr prepare div8k --hr DIV8K_HR --out datasets
    basicsr prepare benchmark --hr Set5/HR --lr-dir Set5/LRbicx4 --out datasets/Set5 --scale 4

Every command runs on ``--workers`` processes with a progress bar, writes each file atomically, skips outputs that
are already there (so an interrupted run is completed by running it again) and ends with a summary. An input that
does not decode, or is too small, is reported and skipped; greyscale, 16-bit and RGBA inputs are converted to 8-bit
3-channel (alpha dropped) and reported. A missing folder or inconsistent input stops the command with exit code 2.
"""
import argparse
import os
import sys
from typing import List, Optional

from ..cli import positive_int
from ..utils.output_folder import folder_problem
from .benchmark import prepare_benchmark
from .div2k import prepare_div2k
from .div8k import prepare_div8k
from .jobs import InputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='basicsr prepare', description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--hr', required=True, help='folder of HR input images')
    common.add_argument('--out', required=True, help='output folder (created if needed)')
    common.add_argument('--workers', type=positive_int, default=min(8, os.cpu_count() or 1),
                        help='worker processes (default: min(8, CPU cores))')
    sub = parser.add_subparsers(dest='command', required=True, metavar='{div2k,div8k,benchmark}')

    div2k = sub.add_parser('div2k', parents=[common], help='DIV2K: mod-crop, bicubic LR, sub-images, LMDB',
                           description='DIV2K HR -> HR (mod lcm(scales)), MATLAB bicubic LR, and for --split train '
                           '480x480 sub-images every 240 px (BasicSR recipe) and optionally LMDB.')
    div2k.add_argument('--scales', type=positive_int, nargs='+', default=[2, 3, 4], help='LR scales (default: 2 3 4)')
    div2k.add_argument('--split', choices=['train', 'valid'], default='train',
                       help='train: 0001-0800 with sub-images; valid: 0801-0900, whole images only')
    div2k.add_argument('--crop-size', type=positive_int, default=480, help='HR sub-image size (default: 480)')
    div2k.add_argument('--step', type=positive_int, default=240, help='HR sub-image step (default: 240)')
    div2k.add_argument('--lmdb', action='store_true', help='also build LMDB databases of the sub-images')

    div8k = sub.add_parser('div8k', parents=[common], help='Test2K/4K/8K from DIV8K 1201-1500 (ClassSR protocol)',
                   description='DIV8K 1201-1300 x1/4 -> Test2K, 1301-1400 x1/2 -> Test4K, 1401-1500 -> Test8K '
                   '(HR mod-4), LR = MATLAB bicubic x1/4.')

    bench = sub.add_parser('benchmark', parents=[common], help='any HR folder -> HR (mod-scale) + bicubic LR',
                           description='Writes OUT/HR (mod-scale crop) and OUT/LR_bicubic/X{scale} with the same '
                           'PNG names; LR computed by MATLAB bicubic, or taken from --lr-dir.')
    bench.add_argument('--scale', type=positive_int, default=4, help='downscaling factor (default: 4)')
    bench.add_argument('--lr-dir', help='official LR images of the set, paired with the HR images by sorted name '
                       '(e.g. SelfExSR img_001_SRF_4_LR.png); their size x scale must equal the cropped HR')
    bench.add_argument('--min-size', type=int, default=0,
                       help='skip HR images whose cropped height or width is below this (default: 0)')
    bench.add_argument('--prefix', default='',
                       help="prefix of the output names (e.g. 'T91_'), to merge several sets into one --out")
    for subparser in (div2k, div8k, bench):
        subparser.set_defaults(subparser=subparser)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.command == 'div2k':
        prepare_div2k(args.hr, args.out, args.scales, args.split, args.crop_size, args.step, args.lmdb, args.workers)
    elif args.command == 'div8k':
        prepare_div8k(args.hr, args.out, args.workers)
    else:
        prepare_benchmark(args.hr, args.out, args.scale, args.lr_dir, args.min_size, args.prefix, args.workers)


def main(argv: Optional[List[str]] = None) -> None:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for option in ('hr', 'lr_dir'):
        folder = getattr(args, option, None)
        if folder is not None and not os.path.isdir(folder):
            args.subparser.error(f"--{option.replace('_', '-')} folder '{folder}' does not exist (or is not a folder)")
    problem = folder_problem(args.out)
    if problem:
        args.subparser.error(f"--out folder '{args.out}' cannot be created ({problem}); choose another --out")
    try:
        run(args)
    except InputError as err:
        args.subparser.error(str(err))


if __name__ == '__main__':
    main()
