"""``basicsr prepare div2k``: DIV2K HR -> mod-crop, MATLAB bicubic LR, sub-images (BasicSR's recipe), LMDB.

Layout under OUT (``split`` is ``train`` or ``valid``)::

    DIV2K_<split>_HR/0001.png                      HR, cropped top-left to a multiple of lcm(scales)
    DIV2K_<split>_LR_bicubic/X4/0001x4.png         MATLAB bicubic x1/4 of that HR (official DIV2K names)
    DIV2K_train_HR_sub/0001_s001.png               train only: 480x480 crops every 240 px, plus a last crop flush
    DIV2K_train_LR_bicubic/X4_sub/0001_s001.png      with each border (BasicSR: thresh_size 0); LR crops are the
                                                     same boxes / 4 of the LR image, with the same names
    DIV2K_train_HR_sub.lmdb, DIV2K_train_LR_bicubic_X4_sub.lmdb     with --lmdb

The HR crop is by the lcm of all scales, so one HR (and one HR_sub folder) serves every scale; DIV2K HR images are
multiples of 12 already, so for 2/3/4 the crop changes nothing. ``DIV2K_<split>_HR`` is not written when it is the
input folder itself (then an image that would need cropping is skipped and reported).
"""
import functools
import math
import os
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from basicsr.data.transforms import mod_crop

from .image_io import image_number, image_size, list_images, mod_crop_size
from .image_ops import bicubic_downscale, downscale_problem, sub_image_boxes
from .jobs import (InputError, JobResult, check_output_folders, check_unique_stems, print_summary, run_jobs,
                   size_mismatch)
from .lmdb_build import build_lmdb
from .provenance import claim_outputs

SPLIT_NUMBERS = {'train': (1, 800), 'valid': (801, 900)}  # DIV2K's image numbers per split


@dataclass(frozen=True)
class Div2kConfig:
    out: str
    split: str
    scales: Tuple[int, ...]
    crop_size: int
    step: int
    write_hr: bool  # False when OUT/DIV2K_<split>_HR is the input folder

    @property
    def sub_images(self) -> bool:
        return self.split == 'train'

    @property
    def multiple(self) -> int:
        return math.lcm(*self.scales)

    def hr_dir(self) -> str:
        return os.path.join(self.out, f'DIV2K_{self.split}_HR')

    def lr_dir(self, scale: int) -> str:
        return os.path.join(self.out, f'DIV2K_{self.split}_LR_bicubic', f'X{scale}')

    def hr_sub_dir(self) -> str:
        return os.path.join(self.out, f'DIV2K_{self.split}_HR_sub')

    def lr_sub_dir(self, scale: int) -> str:
        return f'{self.lr_dir(scale)}_sub'

    def folders(self) -> List[str]:
        folders = [self.hr_dir()] + [self.lr_dir(s) for s in self.scales]
        if self.sub_images:
            folders += [self.hr_sub_dir()] + [self.lr_sub_dir(s) for s in self.scales]
        return folders

    def outputs(self, stem: str, height: int, width: int) -> List[str]:
        """Every output path of an input image whose HR crop (mod ``multiple``) is ``height`` x ``width``."""
        paths = [os.path.join(self.hr_dir(), f'{stem}.png')] if self.write_hr else []
        paths += [os.path.join(self.lr_dir(s), f'{stem}x{s}.png') for s in self.scales]
        if self.sub_images:
            for i in range(len(sub_image_boxes(height, width, self.crop_size, self.step))):
                sub = f'{stem}_s{i + 1:03d}.png'
                paths += [os.path.join(self.hr_sub_dir(), sub)] + [os.path.join(self.lr_sub_dir(s), sub)
                                                                   for s in self.scales]
        return paths


def prepare_div2k_image(config: Div2kConfig, path: str) -> JobResult:
    """Write all outputs of one DIV2K HR image (those not already there)."""
    name = os.path.basename(path)
    stem = os.path.splitext(name)[0]
    result = JobResult(name)
    m = config.multiple
    size = image_size(path)
    crop = mod_crop_size(size, m) if size is not None and min(size) >= m else None
    expected = config.outputs(stem, *crop) if crop else ()
    if crop:
        checks = [(os.path.join(config.hr_dir(), f'{stem}.png'), crop, f'HR (mod-{m} crop)')] if config.write_hr else []
        checks += [(os.path.join(config.lr_dir(s), f'{stem}x{s}.png'), (crop[0] // s, crop[1] // s), f'x1/{s} LR')
                   for s in config.scales]
        result.skipped = next(filter(None, (size_mismatch(*check) for check in checks)), None)
        if result.skipped:
            return result
    img = result.read_input(path, expected)
    if img is None:
        if result.existing:  # complete from an earlier run: say again what it did not make
            result.notes += _sub_image_notes(config, *crop)
        return result
    h, w = img.shape[:2]
    if h < m or w < m:
        result.skipped = f'{w}x{h} is smaller than lcm(scales) = {m}'
        return result
    hr = mod_crop(img, m)
    result.skipped = downscale_problem(*hr.shape[:2], max(config.scales))
    if result.skipped:
        return result
    if not config.write_hr and (hr.shape != img.shape or result.notes):
        change = f'a crop to a multiple of {m}' if hr.shape != img.shape else ', '.join(result.notes)
        result.skipped = (f'{w}x{h} needs {change}, but the HR output folder is the input folder, which is not '
                          'rewritten; use another --out')
        return result
    lr_cache: Dict[int, np.ndarray] = {}

    def lr(scale: int) -> np.ndarray:
        if scale not in lr_cache:
            lr_cache[scale] = bicubic_downscale(hr, scale)
        return lr_cache[scale]

    if config.write_hr:
        result.output(os.path.join(config.hr_dir(), f'{stem}.png'), lambda: hr)
    for s in config.scales:
        result.output(os.path.join(config.lr_dir(s), f'{stem}x{s}.png'), functools.partial(lr, s))
    result.notes += _sub_image_notes(config, *hr.shape[:2])
    if config.sub_images:
        c = config.crop_size
        for i, (y, x) in enumerate(sub_image_boxes(*hr.shape[:2], c, config.step)):
            sub = f'{stem}_s{i + 1:03d}.png'
            result.output(os.path.join(config.hr_sub_dir(), sub), lambda y=y, x=x: hr[y:y + c, x:x + c])
            for s in config.scales:
                result.output(os.path.join(config.lr_sub_dir(s), sub),
                              lambda y=y, x=x, s=s: lr(s)[y // s:(y + c) // s, x // s:(x + c) // s])
    return result


def _sub_image_notes(config: Div2kConfig, height: int, width: int) -> List[str]:
    """['smaller than --crop-size ...'] for a training image (cropped to ``height`` x ``width``) too small for any
    sub-image, else []."""
    if config.sub_images and not sub_image_boxes(height, width, config.crop_size, config.step):
        return [f'smaller than --crop-size {config.crop_size}: no sub-images']
    return []


def _same_folder(a: str, b: str) -> bool:
    return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)


def prepare_div2k(hr_dir: str, out: str, scales: Sequence[int] = (2, 3, 4), split: str = 'train',
                  crop_size: int = 480, step: int = 240, lmdb: bool = False, workers: int = 1) -> List[JobResult]:
    """Prepare the DIV2K layout above under ``out`` from the HR images in ``hr_dir``."""
    scales = tuple(sorted(set(scales)))
    if split == 'train':
        bad = [s for s in scales if crop_size % s or step % s]
        if bad:
            raise InputError(f'--crop-size {crop_size} and --step {step} must be multiples of every scale '
                             f'(not of {bad}) so that LR sub-images match the HR ones exactly')
    elif lmdb:
        raise InputError('--lmdb is for the training sub-images (--split train); validation images stay on disk')
    names = list_images(hr_dir)
    if not names:
        raise InputError(f"HR folder '{hr_dir}' holds no image files")
    check_unique_stems(hr_dir, names)
    first, last = SPLIT_NUMBERS[split]
    outside = [n for n in names if not first <= (image_number(n) or 0) <= last]
    if outside:  # a note, not an error: other sets (Flickr2K, ...) can use this layout too
        print(f"note: {len(outside)} of {len(names)} images in '{hr_dir}' are not numbered {first:04d}-{last:04d} as "
              f"DIV2K's {split} split ({', '.join(outside[:5])}{' ...' if len(outside) > 5 else ''}); check --hr and "
              '--split')
    write_hr = not _same_folder(hr_dir, os.path.join(out, f'DIV2K_{split}_HR'))
    config = Div2kConfig(out, split, scales, crop_size, step, write_hr)
    check_output_folders(config.folders())
    grid = {'crop_size': crop_size, 'step': step} if config.sub_images else {}
    hr_names = [f'DIV2K_{split}_HR/{os.path.splitext(n)[0]}.png' for n in names]
    claim_outputs(out, f'div2k {split}', hr_dir, grid, hr_names, shared=tuple(grid), in_place=not write_hr)
    results = run_jobs(functools.partial(prepare_div2k_image, config), [os.path.join(hr_dir, n) for n in names],
                       workers, f'div2k {split}')
    folders = config.folders()
    if lmdb and not os.path.isdir(config.hr_sub_dir()):
        print('No sub-images were made (every image was skipped): no LMDB built.')
    elif lmdb:
        hr_keys = list_images(config.hr_sub_dir())
        for s in scales:
            if list_images(config.lr_sub_dir(s)) != hr_keys:
                raise InputError(f'{config.lr_sub_dir(s)} and {config.hr_sub_dir()} do not hold the same sub-images; '
                                 're-run the command to complete them before building LMDB')
        for folder in [config.hr_sub_dir()] + [config.lr_sub_dir(s) for s in scales]:
            lmdb_path = os.path.join(out, os.path.relpath(folder, out).replace(os.sep, '_') + '.lmdb')
            if not build_lmdb(folder, lmdb_path):
                print(f'{lmdb_path}: up to date')
            folders.append(lmdb_path)
    print_summary(f'prepare div2k {hr_dir} -> {out}', results, folders)
    return results
