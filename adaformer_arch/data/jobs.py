"""Running one preparation job per input image: worker processes, a progress bar, skip-if-complete, a summary.

A job writes each of its outputs only if it is missing (outputs are written atomically, so an existing file is a
complete one); re-running a command therefore only fills in what an interrupted run left out. That is right only
for outputs of the same input and settings: :mod:`.provenance` refuses a run whose outputs would mix with other
ones, and :func:`size_mismatch` skips an image whose existing output is not the crop this run makes. The output
folders are checked up front (:func:`check_output_folders`).
"""
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import cv2
import numpy as np
import torch
from tqdm import tqdm

from basicsr.utils import scandir

from ..utils.clean_processes import clean_context
from ..utils.image_io import ImageReadError, write_array
from ..utils.output_folder import folder_problem
from .image_io import image_size, read_image

Task = TypeVar('Task')


class InputError(Exception):
    """Bad input that stops a whole command (missing folder, LR/HR pairs that do not match...)."""


def check_unique_stems(folder: str, names: List[str]) -> None:
    """InputError if image files of ``folder`` share a name up to the extension (``0001.png``, ``0001.jpg``): every
    command names its outputs after the input's stem, so one would take the other's place."""
    counts = Counter(os.path.splitext(name)[0] for name in names)
    clashes = sorted(stem for stem, count in counts.items() if count > 1)
    if clashes:
        raise InputError(f"several images in '{folder}' have the same name with different extensions "
                         f"({', '.join(clashes)}); their outputs would take each other's place: rename or remove "
                         'them')


def check_output_folders(folders: Sequence[str]) -> None:
    """InputError if one of the command's output folders cannot be created (a file in its place), before any job
    runs."""
    for folder in folders:
        problem = folder_problem(folder)
        if problem:
            raise InputError(f"output folder '{folder}' cannot be used ({problem}); "
                             f"{'move that file' if problem.endswith('is a file') else 'fix the permissions'} or "
                             'choose another --out')


def size_mismatch(path: str, size: Tuple[int, int], what: str) -> Optional[str]:
    """Why the existing output ``path`` cannot be this run's ``what`` of ``(height, width)`` ``size`` (an earlier
    run with other settings made it), or None (no file there, or the right size)."""
    if not os.path.exists(path):
        return None
    found = image_size(path)
    if found is None or tuple(found) == tuple(size):
        return None
    return (f'{os.path.basename(path)} in {os.path.dirname(path)} (made by an earlier run) is {found[1]}x{found[0]}, '
            f'but this run makes its {what} {size[1]}x{size[0]}; use another --out, or delete that output')


@dataclass
class JobResult:
    """What the job of one input image did. ``skipped`` says why it produced nothing (then nothing was written)."""
    source: str
    written: int = 0
    existing: int = 0
    notes: List[str] = field(default_factory=list)
    skipped: Optional[str] = None

    def read_input(self, path: str, outputs: Sequence[str]) -> Optional[np.ndarray]:
        """The image at ``path`` ((H, W, 3) uint8, its conversions noted), or None when there is nothing to do:
        every file of ``outputs`` (if any) exists already (counted as existing), or it does not read (``skipped``
        says why)."""
        if outputs and all(os.path.exists(out) for out in outputs):
            self.existing = len(outputs)
            return None
        try:
            img, self.notes = read_image(path)
        except ImageReadError as err:
            self.skipped = err.reason
            return None
        return img

    def output(self, path: str, make: Callable[[], np.ndarray]) -> None:
        """Write ``make()`` ((H, W, 3) uint8) as PNG at ``path`` unless a complete file is already there."""
        if os.path.exists(path):
            self.existing += 1
        else:
            write_array(path, make())  # atomic: no half-written file ever exists
            self.written += 1


def _single_threaded() -> None:
    """Worker initialiser: one thread per process (the parallelism is across images)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def run_jobs(worker: Callable[[Task], JobResult], tasks: Sequence[Task], workers: int, desc: str) -> List[JobResult]:
    """``worker(task)`` for every task on ``workers`` processes (in this process if 1), with a progress bar.

    ``worker`` must be picklable (a module-level function or a ``functools.partial`` of one). Results are returned
    sorted by source name.
    """
    results = []
    with tqdm(total=len(tasks), desc=desc, unit='image', dynamic_ncols=True) as bar:
        if workers <= 1 or len(tasks) <= 1:
            for task in tasks:
                results.append(worker(task))
                bar.update()
        else:
            with clean_context().Pool(min(workers, len(tasks)), initializer=_single_threaded) as pool:
                for result in pool.imap_unordered(worker, tasks):
                    results.append(result)
                    bar.update()
    return sorted(results, key=lambda r: r.source)


def _folder_stats(folder: str) -> str:
    paths = [os.path.join(folder, name) for name in scandir(folder)] if os.path.isdir(folder) else []
    size = sum(os.path.getsize(p) for p in paths)
    return f'{len(paths):7d} files {size / 2**20:10.1f} MiB' if size >= 2**20 else \
        f'{len(paths):7d} files {size / 2**10:10.1f} KiB'


def print_summary(command: str, results: Sequence[JobResult], folders: Sequence[str]) -> None:
    """Counts of processed / already complete / skipped images, the conversions applied, and per output folder the
    number of files and their size."""
    skipped = [r for r in results if r.skipped]
    processed = [r for r in results if not r.skipped and r.written]
    complete = [r for r in results if not r.skipped and not r.written]
    lines = [f'{command}: {len(results)} images: {len(processed)} processed, {len(complete)} already complete, '
             f'{len(skipped)} skipped; {sum(r.written for r in results)} files written, '
             f'{sum(r.existing for r in results)} already there']
    if skipped:
        lines.append('skipped:')
        lines += [f'  {r.source}: {r.skipped}' for r in skipped]
    by_note: Dict[str, List[str]] = defaultdict(list)
    for r in results:
        for note in r.notes:
            by_note[note].append(r.source)
    for note, sources in by_note.items():
        lines.append(f'{note}: {", ".join(sources)}')
    lines.append('outputs:')
    width = max(len(f) for f in folders)
    lines += [f'  {folder:<{width}} {_folder_stats(folder)}' for folder in folders]
    print('\n'.join(lines), flush=True)
