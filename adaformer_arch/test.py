"""`basicsr test`: BasicSR's ``test_pipeline`` with AdaFormer registered and the options checked first
(:mod:`adaformer_arch.option_checks`). Results go under ``./results/<name>``.

Usage::

    basicsr test -opt options/test_div8k.yml
    python -m adaformer_arch.test -opt ...
"""
import os
import sys
from typing import List, Optional

import adaformer_arch  # noqa: F401  (applies the compat fixes, registers AdaFormer)
from basicsr import test as basicsr_test
from basicsr.utils.options import parse_options

from .option_checks import checked
from .utils.allocator import tune_glibc_malloc


def main(argv: Optional[List[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    tune_glibc_malloc()
    basicsr_test.parse_options = checked(parse_options)
    basicsr_test.test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
