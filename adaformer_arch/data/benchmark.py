"""``basicsr prepare benchmark``: any folder of HR images -> ``OUT/HR`` (mod-scale crop) and ``OUT/LR_bicubic/X{s}``.

LR images are MATLAB bicubic x1/s of the cropped HR, or, with ``lr_dir``, the official LR images released with the
set (e.g. SelfExSR's ``img_001_SRF_4_LR.png``), paired with the HR images by sorted file name and checked to be
exactly 1/s of the cropped HR. HR and LR outputs have the same file name (``filename_tmpl: '{}'``).
"""
import functools
import os
from dataclasses import dataclass
from typing import List, Optional

from basicsr.data.transforms import mod_crop

from ..utils.image_io import ImageReadError
from .image_io import hr_fits_lr, image_size, list_images, mod_crop_size, read_image
from .image_ops import bicubic_downscale, downscale_problem
from .jobs import (InputError, JobResult, check_output_folders, check_unique_stems, print_summary, run_jobs,
                   size_mismatch)
from .provenance import claim_outputs


@dataclass(frozen=True)
class BenchmarkTask:
    hr_path: str
    lr_path: Optional[str]
    name: str


@dataclass(frozen=True)
class BenchmarkConfig:
    out: str
    scale: int
    min_size: int

    @property
    def hr_dir(self) -> str:
        return os.path.join(self.out, 'HR')

    @property
    def lr_dir(self) -> str:
        return os.path.join(self.out, 'LR_bicubic', f'X{self.scale}')


def prepare_pair(config: BenchmarkConfig, task: BenchmarkTask) -> JobResult:
    """Write ``HR/<name>`` and ``LR_bicubic/X{s}/<name>`` for one image (those not already there)."""
    result = JobResult(os.path.basename(task.hr_path))
    hr_out, lr_out = os.path.join(config.hr_dir, task.name), os.path.join(config.lr_dir, task.name)
    s = config.scale
    size = image_size(task.hr_path)
    if size is not None and min(size) >= s:  # a smaller image is skipped below, by its decoded size
        crop = mod_crop_size(size, s)
        result.skipped = (size_mismatch(hr_out, crop, f'mod-{s} HR crop')
                          or size_mismatch(lr_out, (crop[0] // s, crop[1] // s), f'x1/{s} LR'))
        if result.skipped:
            return result
    hr = result.read_input(task.hr_path, (hr_out, lr_out))
    if hr is None:
        return result
    h, w = hr.shape[:2]
    if h < s or w < s:
        result.skipped = f'{w}x{h} is smaller than the scale {s}'
        return result
    hr = mod_crop(hr, s)
    if min(hr.shape[:2]) < config.min_size:
        result.skipped = f'{hr.shape[1]}x{hr.shape[0]} after the mod-{s} crop is smaller than --min-size ' \
                         f'{config.min_size}'
        return result
    lr = None
    if task.lr_path is None:
        result.skipped = downscale_problem(*hr.shape[:2], s)
        if result.skipped:
            return result
    else:
        lr_name = os.path.basename(task.lr_path)
        try:
            lr, lr_notes = read_image(task.lr_path)
        except ImageReadError as err:
            result.skipped = f'LR {lr_name}: {err.reason}'
            return result
        result.notes += [f'LR {note}' for note in lr_notes]
        if (lr.shape[0] * s, lr.shape[1] * s) != hr.shape[:2]:
            result.skipped = f'LR {lr_name} is {lr.shape[1]}x{lr.shape[0]}, x{s} does not give the cropped HR ' \
                             f'{hr.shape[1]}x{hr.shape[0]}'
            return result
    result.output(hr_out, lambda: hr)
    result.output(lr_out, lambda: bicubic_downscale(hr, s) if lr is None else lr)
    return result


def _check_pair_sizes(tasks: List[BenchmarkTask], scale: int) -> None:
    """Header sizes only: every LR x scale must equal its mod-cropped HR (else the pairing is wrong)."""
    bad = []
    for task in tasks:
        hr, lr = image_size(task.hr_path), image_size(task.lr_path)
        if hr is None or lr is None:
            continue  # undecodable: reported and skipped by its job
        cropped = mod_crop_size(hr, scale)
        if not hr_fits_lr(hr, lr, scale):
            bad.append(f'  {os.path.basename(task.hr_path)} ({hr[1]}x{hr[0]}, cropped {cropped[1]}x{cropped[0]}) '
                       f'<-> {os.path.basename(task.lr_path)} ({lr[1]}x{lr[0]}, x{scale} = '
                       f'{lr[1] * scale}x{lr[0] * scale})')
    if bad:
        raise InputError(f'{len(bad)} LR images are not exactly 1/{scale} of the mod-{scale} cropped HR image they '
                         'are paired with (pairs are made by sorted file name):\n' + '\n'.join(bad) +
                         '\nCheck --scale, and that --lr-dir holds the LR images of this --hr folder, one per HR '
                         'image, numbered in the alphabetical order of the HR names.')


def prepare_benchmark(hr_dir: str, out: str, scale: int, lr_dir: Optional[str] = None, min_size: int = 0,
                      prefix: str = '', workers: int = 1) -> List[JobResult]:
    """Prepare ``OUT/HR`` and ``OUT/LR_bicubic/X{scale}``; output names are ``<prefix><HR stem>.png``."""
    if '/' in prefix or os.sep in prefix:
        raise InputError(f"--prefix '{prefix}' holds a path separator: outputs would go to a sub-folder that data "
                         "sets do not read; use e.g. 'T91_'")
    if min_size < 0:
        raise InputError(f'--min-size must be >= 0, got {min_size}')
    hr_out = os.path.join(out, 'HR')
    if os.path.isdir(hr_out) and os.path.samefile(hr_dir, hr_out):
        raise InputError(f"--out '{out}' would write the cropped HR images over the input folder '{hr_dir}'; "
                         'choose another --out')
    hr_names = list_images(hr_dir)
    if not hr_names:
        raise InputError(f"HR folder '{hr_dir}' holds no image files")
    lr_paths: List[Optional[str]] = [None] * len(hr_names)
    if lr_dir is not None:
        lr_names = list_images(lr_dir)
        if len(lr_names) != len(hr_names):
            raise InputError(f"--lr-dir '{lr_dir}' holds {len(lr_names)} images but --hr '{hr_dir}' holds "
                             f'{len(hr_names)}; LR and HR images are paired one to one by sorted file name')
        lr_paths = [os.path.join(lr_dir, name) for name in lr_names]
    tasks = [BenchmarkTask(os.path.join(hr_dir, name), lr, f'{prefix}{os.path.splitext(name)[0]}.png')
             for name, lr in zip(hr_names, lr_paths)]
    check_unique_stems(hr_dir, hr_names)
    if lr_dir is not None:
        _check_pair_sizes(tasks, scale)
    config = BenchmarkConfig(out, scale, min_size)
    check_output_folders([config.hr_dir, config.lr_dir])
    claim_outputs(out, 'benchmark', hr_dir,
                  {f'LR x{scale}': os.path.realpath(lr_dir) if lr_dir else 'bicubic', 'prefix': prefix,
                   'min_size': min_size}, [f'HR/{task.name}' for task in tasks])
    results = run_jobs(functools.partial(prepare_pair, config), tasks, workers, 'benchmark')
    print_summary(f'prepare benchmark {hr_dir} -> {out}', results, [config.hr_dir, config.lr_dir])
    return results
