"""`basicsr test`: BasicSR's ``test_pipeline`` with AdaFormer registered. Results go under ``./results/<name>``.

Usage::

    basicsr test -opt options/test_div8k.yml
    python -m adaformer_arch.test -opt ...
"""
import os
import sys
from typing import List, Optional

import adaformer_arch  # noqa: F401  (applies the compat fixes, registers AdaFormer)
from basicsr.test import test_pipeline

from .utils.allocator import tune_glibc_malloc


def main(argv: Optional[List[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    tune_glibc_malloc()
    test_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
