"""``basicsr prepare div8k``: Test2K / Test4K / Test8K from DIV8K images 1201-1500 (the ClassSR protocol).

| set | DIV8K images | HR | LR |
|---|---|---|---|
| Test2K | 1201-1300 | bicubic x1/4 of the original | bicubic x1/4 of HR |
| Test4K | 1301-1400 | bicubic x1/2 of the original | bicubic x1/4 of HR |
| Test8K | 1401-1500 | the original | bicubic x1/4 of HR |

The original is first cropped (top-left) to a multiple of 4 x its downsampling factor, so the downsampling is exact
and every HR is a multiple of 4. All resizing is MATLAB bicubic (antialiased). Outputs: ``OUT/<set>/HR/<stem>.png``
and ``OUT/<set>/LR_bicubic/X4/<stem>.png``.
"""
import functools
import os
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from basicsr.data.transforms import mod_crop

from .image_io import image_number, list_images
from .image_ops import bicubic_downscale
from .jobs import InputError, JobResult, check_output_folders, check_unique_stems, print_summary, run_jobs
from .provenance import claim_outputs

SCALE = 4
# (set name, first image, last image, downsampling factor of the original)
TEST_SETS: Tuple[Tuple[str, int, int, int], ...] = (('Test2K', 1201, 1300, 4), ('Test4K', 1301, 1400, 2),
                                                   ('Test8K', 1401, 1500, 1))


@dataclass(frozen=True)
class Div8kTask:
    path: str
    test_set: str
    factor: int


def test_set_of(number: int) -> Optional[Tuple[str, int]]:
    """``(set name, downsampling factor)`` of a DIV8K image number, or ``None`` outside 1201-1500."""
    for name, first, last, factor in TEST_SETS:
        if first <= number <= last:
            return name, factor
    return None


def prepare_div8k_image(out: str, task: Div8kTask) -> JobResult:
    """Write the HR and LR image of one DIV8K image (those not already there)."""
    name = os.path.basename(task.path)
    result = JobResult(name)
    png = f'{os.path.splitext(name)[0]}.png'
    hr_out = os.path.join(out, task.test_set, 'HR', png)
    lr_out = os.path.join(out, task.test_set, 'LR_bicubic', f'X{SCALE}', png)
    img = result.read_input(task.path, (hr_out, lr_out))
    if img is None:
        return result
    multiple = SCALE * task.factor
    if min(img.shape[:2]) < multiple:
        result.skipped = f'{img.shape[1]}x{img.shape[0]} is smaller than {multiple} (x1/{task.factor}, then x1/{SCALE})'
        return result
    img = mod_crop(img, multiple)
    hr = img if task.factor == 1 else bicubic_downscale(img, task.factor)
    result.output(hr_out, lambda: hr)
    result.output(lr_out, lambda: bicubic_downscale(hr, SCALE))
    return result


def prepare_div8k(hr_dir: str, out: str, workers: int = 1) -> List[JobResult]:
    """Prepare ``OUT/Test2K``, ``OUT/Test4K`` and ``OUT/Test8K`` from the DIV8K images in ``hr_dir``."""
    names = list_images(hr_dir)
    tasks, ignored = [], []
    for name in names:
        number = image_number(name)
        test_set = test_set_of(number) if number is not None else None
        if test_set is None:
            ignored.append(name)
        else:
            tasks.append(Div8kTask(os.path.join(hr_dir, name), *test_set))
    if not tasks:
        raise InputError(f"'{hr_dir}' holds no DIV8K images numbered 1201-1500 (e.g. 1201.png); "
                         f'it holds {len(names)} image files')
    task_names = [os.path.basename(task.path) for task in tasks]  # the images it would prepare
    check_unique_stems(hr_dir, task_names)
    by_number: Dict[int, List[str]] = defaultdict(list)
    for name in task_names:
        by_number[image_number(name)].append(name)
    repeated = [names for names in by_number.values() if len(names) > 1]
    if repeated:
        raise InputError(f"several images in '{hr_dir}' have the same DIV8K number ("
                         f"{'; '.join(', '.join(names) for names in repeated[:5])}); a test set would hold that image "
                         'twice: keep one of each')
    if ignored:
        print(f'ignoring {len(ignored)} images outside 1201-1500: {", ".join(ignored[:5])}'
              f'{" ..." if len(ignored) > 5 else ""}')
    found = {image_number(os.path.basename(t.path)) for t in tasks}
    missing = [n for _, first, last, _ in TEST_SETS for n in range(first, last + 1) if n not in found]
    if missing:
        print(f'warning: {len(missing)} of the 300 test images are not in {hr_dir} (first: {missing[:5]}); '
              'the test sets will be incomplete')
    folders = [os.path.join(out, name, sub) for name, *_ in TEST_SETS for sub in ('HR', f'LR_bicubic/X{SCALE}')]
    check_output_folders(folders)
    claim_outputs(out, 'div8k', hr_dir, {}, [f'{task.test_set}/HR/{os.path.splitext(name)[0]}.png'
                                             for task, name in zip(tasks, task_names)])
    results = run_jobs(functools.partial(prepare_div8k_image, out), tasks, workers, 'div8k')
    print_summary(f'prepare div8k {hr_dir} -> {out}', results, folders)
    return results
