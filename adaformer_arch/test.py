"""`basicsr test`: BasicSR's ``test_pipeline`` with AdaFormer registered, the options checked first
(:mod:`adaformer_arch.option_checks`) and the image pairs of each data set checked before testing
(:mod:`adaformer_arch.data.test_pairs`). Results go under ``./results/<name>``.

A pair that cannot be evaluated (a file truncated, corrupt or not an image, or an image too small for a metric) is
skipped with a warning naming the file and the reason; the other pairs are tested and their metrics reported. Exit
status: 0 every pair tested, 1 some pairs skipped, 2 bad options (nothing run). docs/reliability.md has the details.

Usage::

    basicsr test -opt options/test_div8k.yml
    python -m adaformer_arch.test -opt ...
"""
import os
import sys
from typing import Dict, List, Optional

from basicsr import test as basicsr_test
from basicsr.data import build_dataset, paired_image_dataset
from basicsr.utils import get_root_logger
from basicsr.utils.options import parse_options

from .compat import exit_distributed_rank
from .data import test_pairs
from .option_checks import checked, exit_with_errors
from .utils.allocator import tune_glibc_malloc

EXIT_PAIRS_SKIPPED = 1


class CheckedTest:
    """The hooks of one `basicsr test` run into BasicSR's ``test_pipeline``."""

    def __init__(self) -> None:
        self.metrics: Dict = {}
        self.skipped: Dict[str, int] = {}  # data set name -> pairs skipped
        self.tested: Dict[str, int] = {}  # data set name -> pairs left to test

    def install(self) -> None:
        check = checked(parse_options)

        def parse_and_keep(*args, **kwargs):
            opt, parsed = check(*args, **kwargs)
            self.metrics = (opt.get('val') or {}).get('metrics') or {}
            return opt, parsed

        basicsr_test.parse_options = parse_and_keep
        basicsr_test.build_dataset = self.build_dataset
        paired_image_dataset.imfrombytes = test_pairs.imfrombytes

    def build_dataset(self, dataset_opt: Dict):
        """BasicSR's ``build_dataset``; a ``PairedImageDataset`` loses the pairs that cannot be evaluated."""
        dataset = build_dataset(dataset_opt)
        if not isinstance(dataset, paired_image_dataset.PairedImageDataset):
            return dataset
        name, total = dataset_opt['name'], len(dataset.paths)
        problems = test_pairs.drop_unusable_pairs(dataset, self.metrics)
        logger = get_root_logger()
        for problem in problems:
            logger.warning(f'{name}: skipping the pair of {problem}.')
        if problems and not dataset.paths:
            exit_with_errors(f'data set {name}', [f'none of its {total} pairs can be evaluated (listed above).'])
        if problems:
            self.skipped[name] = len(problems)
        self.tested[name] = len(dataset.paths)
        return dataset

    def report(self) -> int:
        """Log which data sets lost pairs; the exit status."""
        if not self.skipped:
            return 0
        lines = [f'{name}: {count} of {count + self.tested[name]} pairs skipped, its metrics are over the other '
                 f'{self.tested[name]}' for name, count in self.skipped.items()]
        get_root_logger().warning('Some image pairs could not be evaluated (see the warnings above): '
                                  + '; '.join(lines) + '. Re-save or remove those files (or change the metrics) '
                                  'for results over whole data sets.')
        return EXIT_PAIRS_SKIPPED


def main(argv: Optional[List[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    tune_glibc_malloc()
    run = CheckedTest()
    run.install()
    basicsr_test.test_pipeline(os.getcwd())
    status = run.report()
    exit_distributed_rank(status)
    if status:
        sys.exit(status)


if __name__ == '__main__':
    main()
