"""Checks of the ``datasets`` blocks: registered types, the keys of a ``PairedImageDataset`` block (misspelt or
missing), folders and files that exist, a ``filename_tmpl`` that names something, image folders that pair up,
``PairedImageDataset`` pairs whose sizes (read from the image headers or the LMDB ``meta_info.txt``, not by
decoding) fit the scale and ``gt_size``, and a training set that fills its batches."""
import difflib
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import cv2
from PIL import Image

from basicsr.data.data_util import (paired_paths_from_folder, paired_paths_from_lmdb,
                                    paired_paths_from_meta_info_file)
from basicsr.utils import scandir
from basicsr.utils.registry import DATASET_REGISTRY

from ..data.image_io import hr_fits_lr
from ..utils.image_io import upright_size
from .values import closest, is_integer, is_number, misspellings, registered

# Keys of a PairedImageDataset block that basicsr 1.4.2 reads (PairedImageDataset, build_dataset, build_dataloader,
# the prefetchers; phase and scale are set by parse_options), and those it indexes without a default.
PAIRED_KEYS = ('name', 'type', 'phase', 'scale', 'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'filename_tmpl',
               'io_backend', 'gt_size', 'use_hflip', 'use_rot', 'color', 'mean', 'std', 'batch_size_per_gpu',
               'num_worker_per_gpu', 'dataset_enlarge_ratio', 'prefetch_mode', 'num_prefetch_queue', 'pin_memory',
               'persistent_workers')
PAIRED_NEEDS = ('name', 'io_backend')
PAIRED_TRAIN_NEEDS = ('use_hflip', 'use_rot', 'batch_size_per_gpu', 'num_worker_per_gpu')  # gt_size: training.py
KEY_SUGGEST = 0.6  # difflib ratio above which an unknown key is named next to a missing one ('batch_size' for
# 'batch_size_per_gpu': 0.71)
PAIR_CHECK_THREADS = 8
MAX_PAIRS_NAMED = 3  # per data set; the others are counted
SHORTFALL_WARNED = 0.01  # share of total_iter that a run may end short of without a warning


def _check_dataset(where: str, dataset: Any, scale: Optional[int],
                   is_train: bool = True) -> Tuple[List[str], Optional[int]]:
    """A data set block: a registered ``type``, its folders and files exist, and for ``PairedImageDataset`` the
    HR/LR pairs fit the scale (sizes from the headers). -> (problems, the number of pairs where they were listed)."""
    if not isinstance(dataset, dict):
        return [f'{where}: expected a block of data set options (type, dataroot_gt, ...), got {dataset!r}'], None
    if not registered(DATASET_REGISTRY, dataset.get('type')):
        kind = dataset.get('type')
        return [f'{where}.type: no data set named {kind!r}{closest(str(kind), DATASET_REGISTRY.keys())}'], None
    if dataset['type'] == 'PairedImageDataset':
        key_problems = _paired_key_problems(where, dataset)
        if key_problems:
            return key_problems, None
        missing = [key for key in ('dataroot_gt', 'dataroot_lq') if not dataset.get(key)]
        if missing:
            return [f'{where}: PairedImageDataset needs {" and ".join(missing)} (the HR and LR folders); '
                    'add them'], None
        tmpl = dataset.get('filename_tmpl', '{}')
        if not _formats_one_name(tmpl):
            return [f"{where}.filename_tmpl: must be a string with one '{{}}' for the HR image's name (e.g. '{{}}' "
                    f"or '{{}}x4'), got {tmpl!r}"], None
    problems = []
    for key, value in dataset.items():
        if (key.startswith('dataroot') or key == 'meta_info_file') and value is not None and not osp.exists(value):
            problems.append(f'{where}.{key}: {value} does not exist (relative paths start from the working '
                            f'directory {os.getcwd()}). Fix the path or prepare the data (docs/datasets.md).')
    if problems or dataset.get('type') != 'PairedImageDataset' or not is_integer(scale, 1):
        return problems, None  # a bad scale is reported once, by the scale check
    try:
        pairs = _pair_sizes(dataset)
    except (AssertionError, ValueError, OSError) as err:
        try:
            detail = _unpaired(dataset)
        except (OSError, KeyError, IndexError, ValueError):  # a folder or template BasicSR's message names better
            detail = ''
        return [f'{where}: the HR/LR pairs cannot be listed: {detail or err}'], None
    gt_size = dataset.get('gt_size') if dataset.get('phase') == 'train' else None
    bad, unreadable, advice = [], [], set()
    for gt_path, lq_path, gt, lq in pairs:
        if isinstance(gt, str) or isinstance(lq, str):  # the header does not read: the reason
            unreadable.append(gt if isinstance(gt, str) else lq)
            continue
        problem, check = _pair_problem(gt, lq, scale, train=dataset.get('phase') == 'train', gt_size=gt_size)
        if problem:
            bad.append(f'{gt_path} is {gt[1]}x{gt[0]} (HxW) and its LR {lq_path} is {lq[1]}x{lq[0]}: {problem}')
            advice.add(check)
    if bad:
        more = f'; and {len(bad) - MAX_PAIRS_NAMED} more' if len(bad) > MAX_PAIRS_NAMED else ''
        what = f'scale {scale}' + (f' and gt_size {gt_size}' if PATCH_ADVICE in advice else '')
        problems.append(f'{where}: {len(bad)} of {len(pairs)} HR/LR pairs do not fit {what}: '
                        f'{"; ".join(bad[:MAX_PAIRS_NAMED])}{more}. {" ".join(sorted(advice))}')
    if unreadable and is_train:  # `basicsr test` skips these pairs (adaformer_arch.data.test_pairs)
        more = f'; and {len(unreadable) - MAX_PAIRS_NAMED} more' if len(unreadable) > MAX_PAIRS_NAMED else ''
        problems.append(f'{where}: {len(unreadable)} of {len(pairs)} images cannot be read: '
                        f'{"; ".join(unreadable[:MAX_PAIRS_NAMED])}{more}. Re-save or remove them.')
    return problems, len(pairs)


def _paired_key_problems(where: str, dataset: Dict) -> List[str]:
    """Keys of a ``PairedImageDataset`` block that misspell one BasicSR reads (it would silently use the default:
    ``use_flip``, ``filename_tmp``), and keys it indexes that are missing (a KeyError when the data set or its loader
    is built, or at the first training batch), each with the unknown key that was probably meant."""
    unknown = [key for key in dataset if key not in PAIRED_KEYS]
    meant = misspellings(unknown, PAIRED_KEYS, dataset)
    problems = [f'{where}.{key}: PairedImageDataset has no such option; did you mean {known!r}? Fix the spelling.'
                for key, known in meant.items()]
    for key in PAIRED_NEEDS + (PAIRED_TRAIN_NEEDS if dataset.get('phase') == 'train' else ()):
        if key in dataset or key in meant.values():
            continue
        guess = difflib.get_close_matches(key, [k for k in unknown if k not in meant], n=1, cutoff=KEY_SUGGEST)
        problems.append(f'{where}: PairedImageDataset needs {key!r}'
                        + (f' (is {guess[0]!r} meant?)' if guess else '') + '; add it')
    return problems


def _check_batches(opt: Dict, pair_counts: Dict[str, int]) -> Tuple[List[str], List[str]]:
    """A ``PairedImageDataset`` training set (``pair_counts``: its HR/LR pairs by phase, as ``_check_dataset``
    listed them) against its batch: BasicSR counts ``ceil(samples / (batch x world_size))`` iterations per epoch, but
    its loader drops the last, incomplete batch. With fewer samples than one batch nothing is trained (and the run
    ends "successfully"); otherwise training can end short of ``total_iter`` (warned when by more than
    ``SHORTFALL_WARNED`` of it). -> (problems, warnings)."""
    problems, warnings = [], []
    world = opt.get('world_size', 1)
    # DataParallel (several GPUs, no launcher): one loader batch is batch_size_per_gpu x num_gpu, counted as one
    num_gpu = opt.get('num_gpu', 0)
    gpus_per_batch = num_gpu if not opt.get('dist') and is_integer(num_gpu, 2) else 1
    total_iter = (opt.get('train') or {}).get('total_iter')
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not phase.startswith('train') or phase not in pair_counts:
            continue
        batch, ratio = dataset.get('batch_size_per_gpu'), dataset.get('dataset_enlarge_ratio', 1)
        if not is_integer(batch, 1) or not is_integer(ratio, 1) or not is_integer(world, 1):
            continue
        samples = pair_counts[phase] * ratio
        loader_batch = batch * gpus_per_batch
        full_batches = math.ceil(samples / world) // loader_batch  # per process and epoch (EnlargedSampler, drop_last)
        counted = math.ceil(samples / (batch * world))  # BasicSR's iterations per epoch
        where = f'datasets.{phase}'
        if full_batches == 0:
            problems.append(f'{where}: {samples} samples (image pairs x dataset_enlarge_ratio {ratio}) do not fill '
                            f'one batch of {loader_batch} per process (batch_size_per_gpu {batch}): BasicSR would end '
                            'without training. Add images, raise dataset_enlarge_ratio or lower batch_size_per_gpu.')
        elif is_number(total_iter, 1) and full_batches < counted:
            reached = (math.ceil(int(total_iter) / counted) + 1) * full_batches  # epochs 0..total_epochs
            if reached < int(total_iter) * (1 - SHORTFALL_WARNED):
                warnings.append(f'{where}: with {samples} samples and batches of {loader_batch} x {world} processes, '
                                f'BasicSR counts {counted} iterations per epoch but its loader gives {full_batches}: '
                                f'a run from iteration 0 ends at iteration {reached}, not total_iter '
                                f'{int(total_iter)}.')
    return problems, warnings


PAIR_ADVICE = 'Check dataroot_gt, dataroot_lq and scale.'
PATCH_ADVICE = 'Lower gt_size, or train on larger images.'


def _pair_problem(gt: Tuple[int, int], lq: Tuple[int, int], scale: int, train: bool,
                  gt_size: Optional[int]) -> Tuple[str, str]:
    """What is wrong with a pair of sizes (width, height) and which options to check, or ('', '')."""
    if train and tuple(gt) != tuple(q * scale for q in lq):
        return f'for training HR must be exactly {scale} x LR', PAIR_ADVICE
    if not train and not hr_fits_lr(gt, lq, scale):
        return f'HR must be {scale} x LR (plus less than {scale} px of border)', PAIR_ADVICE
    if gt_size and min(lq) < gt_size // scale:
        return (f'the LR image is smaller than the training patch (gt_size / scale = {gt_size // scale} px)',
                PATCH_ADVICE)
    return '', ''


def _formats_one_name(tmpl: Any) -> bool:
    """``filename_tmpl`` works as BasicSR uses it: ``tmpl.format(stem)``."""
    try:
        return isinstance(tmpl, str) and tmpl.format('a') != tmpl.format('b')
    except (IndexError, KeyError, ValueError):
        return False


def _pairs_from_folders(dataset: Dict) -> bool:
    """PairedImageDataset pairs the files of its two folders by name (no LMDB, no ``meta_info_file``)."""
    return dataset.get('io_backend', {}).get('type') != 'lmdb' and dataset.get('meta_info_file') is None


def _unpaired(dataset: Dict) -> str:
    """For folders of images: the files that are not images (OpenCV has no reader for them), which HR images have no
    LR image under the name ``filename_tmpl`` gives them, and which LR images no HR image names; '' when every image
    has its partner (or the pairs come from elsewhere)."""
    if not _pairs_from_folders(dataset):
        return ''
    gt_dir, lq_dir = dataset['dataroot_gt'], dataset['dataroot_lq']
    images: Dict[str, List[str]] = {gt_dir: [], lq_dir: []}
    strays = []
    for folder in images:
        for name in sorted(scandir(folder)):
            path = osp.join(folder, name)
            if cv2.haveImageReader(path):
                images[folder].append(name)
            else:
                strays.append(path)
    tmpl = dataset.get('filename_tmpl', '{}')
    expected = {f'{tmpl.format(osp.splitext(name)[0])}{osp.splitext(name)[1]}': name for name in images[gt_dir]}
    lq_names = set(images[lq_dir])
    no_lq = [name if lq == name else f'{name} (expects {lq})' for lq, name in expected.items() if lq not in lq_names]
    no_gt = sorted(lq_names - set(expected))

    def some(names: List[str]) -> str:
        more = f' and {len(names) - MAX_PAIRS_NAMED} more' if len(names) > MAX_PAIRS_NAMED else ''
        return ', '.join(names[:MAX_PAIRS_NAMED]) + more

    found = []
    if strays:  # named on their own, not as images without a partner
        found.append(f'{len(strays)} file(s) that are not images: {some(strays)} (BasicSR pairs every file of the '
                     'two folders: move them out)')
    for names, what in ((no_lq, f'with no LR image in {lq_dir}'), (no_gt, f'with no HR image in {gt_dir}')):
        if names:
            kind = ('HR' if names is no_lq else 'LR') + (' image' if len(names) == 1 else ' images')
            found.append(f'{len(names)} {kind} {what}: {some(names)}')
    return '; '.join(found)


def _pair_paths(dataset: Dict) -> List[Dict[str, str]]:
    """The ``{'lq_path', 'gt_path'}`` pairs PairedImageDataset would load (LMDB keys for an LMDB backend)."""
    folders, keys = [dataset['dataroot_lq'], dataset['dataroot_gt']], ['lq', 'gt']
    if dataset.get('io_backend', {}).get('type') == 'lmdb':
        return paired_paths_from_lmdb(folders, keys)
    tmpl = dataset.get('filename_tmpl', '{}')
    if dataset.get('meta_info_file') is not None:
        return paired_paths_from_meta_info_file(folders, keys, dataset['meta_info_file'], tmpl)
    return paired_paths_from_folder(folders, keys, tmpl)


def _pair_sizes(dataset: Dict) -> List[Tuple[str, str, Any, Any]]:
    """(gt name, lq name, gt (w, h), lq (w, h)) of every pair that PairedImageDataset would load; a size is a message
    instead where the header of that file cannot be read."""
    paths = _pair_paths(dataset)
    if dataset.get('io_backend', {}).get('type') == 'lmdb':
        lq_sizes, gt_sizes = (_lmdb_sizes(dataset[key]) for key in ('dataroot_lq', 'dataroot_gt'))
        return [(p['gt_path'], p['lq_path'], gt_sizes[p['gt_path']], lq_sizes[p['lq_path']]) for p in paths]

    def size(path: str) -> Any:
        try:
            with Image.open(path) as img:  # reads the header only
                return upright_size(img)  # as BasicSR's decoder (OpenCV's IMREAD_COLOR) turns it
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return f'{path} ({err})'

    def sizes(p: Dict) -> Tuple[str, str, Any, Any]:
        return p['gt_path'], p['lq_path'], size(p['gt_path']), size(p['lq_path'])

    with ThreadPoolExecutor(PAIR_CHECK_THREADS) as pool:
        return list(pool.map(sizes, paths))


def _lmdb_sizes(folder: str) -> Dict[str, Tuple[int, int]]:
    """LMDB key -> (w, h), from ``meta_info.txt`` lines such as ``baboon.png (120,125,3) 1``."""
    sizes = {}
    with open(osp.join(folder, 'meta_info.txt')) as f:
        for line in f:
            match = re.match(r'(\S+?)\.\S+ \((\d+),(\d+)', line)
            if match:
                sizes[match.group(1)] = (int(match.group(3)), int(match.group(2)))
    return sizes
