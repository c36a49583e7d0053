"""PSNR vs latency of AdaFormer over a sweep of ``halt_eps`` (plus reference networks) on a paired dataset.

Per image, every variant runs once, interleaved (rotated order per image), after one untimed warm-up pass over the
variants on the first image. The timed forward's output gives the PSNR (Y channel, ``crop_border = scale``,
BasicSR's ``calculate_psnr``); one more untimed profiling forward gives MACs and sparsity.
"""
import os
import statistics
import time
from typing import Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from basicsr.data.data_util import paired_paths_from_folder
from basicsr.metrics import calculate_psnr
from basicsr.utils import img2tensor, tensor2img

from ..data.image_io import hr_fits_lr, image_size
from ..utils.device_clock import sync
from .macs import profile
from .networks import bare
from .options import BenchError
from .runner import round_order


def dataset_pairs(hr_dir: str, lr_dir: str, scale: int) -> List[Dict[str, str]]:
    """[{'lq_path', 'gt_path'}] of the images with the same name in both folders, each HR image ``scale`` times its
    LR image (plus less than ``scale`` pixels of border), checked from the headers before anything is measured."""
    for flag, folder in (('--dataset-hr', hr_dir), ('--dataset-lr', lr_dir)):
        if not os.path.isdir(folder):
            raise BenchError(f'{flag} {folder} is not a folder')
    try:
        pairs = paired_paths_from_folder([lr_dir, hr_dir], ['lq', 'gt'], '{}')
    except (AssertionError, ValueError) as e:
        raise BenchError(f'--dataset-lr {lr_dir} and --dataset-hr {hr_dir} do not pair up: {e}') from None
    if not pairs:
        raise BenchError(f'--dataset-lr {lr_dir} holds no images')
    for pair in pairs:
        lq, gt = image_size(pair['lq_path']), image_size(pair['gt_path'])
        if lq is None or gt is None:
            raise BenchError(f"cannot read the header of {pair['lq_path'] if lq is None else pair['gt_path']}")
        if not hr_fits_lr(gt, lq, scale):
            raise BenchError(f"{pair['gt_path']} is {gt[0]}x{gt[1]} (HxW) but its LR {pair['lq_path']} is "
                             f'{lq[0]}x{lq[1]}: HR must be {scale}x the LR; check --dataset-hr and --dataset-lr')
    return sorted(pairs, key=lambda p: p['lq_path'])


def _read(path: str):
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise BenchError(f'cannot read image {path}')
    return img


Variant = Tuple[str, nn.Module, Optional[float]]  # display name, network, halt_eps to set (None: it has none)


@torch.no_grad()
def _run(variant: Variant, lq: torch.Tensor, device: torch.device) -> Tuple[float, torch.Tensor]:
    _, net, halt_eps = variant
    if halt_eps is not None:
        bare(net).halt_eps = halt_eps
    sync(device)
    start = time.perf_counter()
    out = net(lq)
    sync(device)
    return time.perf_counter() - start, out


def _batch(img: np.ndarray, device: torch.device) -> Tensor:
    """(h, w, 3) BGR uint8 image -> (1, 3, h, w) RGB float batch in [0, 1], contiguous like a data loader's."""
    return img2tensor(img.astype('float32') / 255.0, bgr2rgb=True, float32=True)[None].contiguous().to(device)


def sweep(adaformer: nn.Module, halt_eps: List[float], references: Dict[str, nn.Module], pairs: List[Dict[str, str]],
          scale: int, device: torch.device, step: Callable[[], None]) -> Dict:
    """Runs the sweep over ``pairs`` (from :func:`dataset_pairs`); returns per variant mean PSNR, mean/median
    latency, mean GMACs, mean sparsity, and the numbers of every image."""
    original_eps = bare(adaformer).halt_eps
    variants: List[Variant] = [(f'halt_eps {e:g}', adaformer, e) for e in halt_eps]
    # a reference runs at its own halt_eps, set before each run: it may be the swept network itself
    variants += [(name, net, getattr(bare(net), 'halt_eps', None)) for name, net in references.items()]
    swept = len(halt_eps)
    images = [(os.path.basename(p['lq_path']), _read(p['lq_path']), _read(p['gt_path'])) for p in pairs]
    records: Dict[str, List[Dict]] = {name: [] for name, _, _ in variants}
    try:
        first = _batch(images[0][1], device)
        for variant in variants:
            _run(variant, first, device)
            step()
        names = [v[0] for v in variants]
        by_name = {v[0]: v for v in variants}
        for i, (image, lq_img, gt_img) in enumerate(images):
            lq = _batch(lq_img, device)
            gt = gt_img[:lq_img.shape[0] * scale, :lq_img.shape[1] * scale]
            for name in round_order(names, i):
                seconds, out = _run(by_name[name], lq, device)
                sr = tensor2img(out.cpu())
                if sr.shape != gt.shape:
                    raise BenchError(f'{name}: output {sr.shape} does not match HR {gt.shape} of {image}; check '
                                     f'that the HR images are {scale}x the LR images')
                prof = profile(by_name[name][1], lq)
                records[name].append({'image': image, 'latency_ms': seconds * 1000.0,
                                      'psnr_y': calculate_psnr(sr, gt, crop_border=scale, test_y_channel=True),
                                      'macs': prof.macs, 'sparsity': prof.sparsity})
                step()
    finally:
        bare(adaformer).halt_eps = original_eps
    results = []
    for i, (name, _, eps_value) in enumerate(variants):
        rows = records[name]
        sparsities = [r['sparsity'] for r in rows if r['sparsity'] is not None]
        results.append({
            'name': name,
            'halt_eps': eps_value if i < swept else None,  # None: a reference network
            'reference_halt_eps': None if i < swept else eps_value,
            'psnr_y': statistics.fmean(r['psnr_y'] for r in rows),
            'latency_ms_mean': statistics.fmean(r['latency_ms'] for r in rows),
            'latency_ms_median': statistics.median(r['latency_ms'] for r in rows),
            'gmacs_mean': statistics.fmean(r['macs'] for r in rows) / 1e9,
            'sparsity_mean': statistics.fmean(sparsities) if sparsities else None,
            'images': rows,
        })
    return {'num_images': len(images), 'crop_border': scale, 'metric': 'PSNR Y', 'variants': results}


def num_steps(num_images: int, num_variants: int) -> int:
    """Progress-bar steps of :func:`sweep`."""
    return num_variants * (num_images + 1)
