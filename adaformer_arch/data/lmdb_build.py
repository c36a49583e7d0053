"""LMDB databases of prepared image folders, with BasicSR's ``make_lmdb_from_imgs`` (writes ``meta_info.txt``).

A database is built under a hidden temporary name and renamed into place when complete, so ``<name>.lmdb`` is
either absent or whole. It is rebuilt only when its ``meta_info.txt`` no longer lists exactly the folder's images.
"""
import contextlib
import glob
import os
import shutil
from typing import List

from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from .image_io import list_images


def lmdb_keys(lmdb_path: str) -> List[str]:
    """Keys listed in ``<lmdb_path>/meta_info.txt`` (empty if there is none)."""
    meta = os.path.join(lmdb_path, 'meta_info.txt')
    if not os.path.isfile(meta):
        return []
    with open(meta) as f:
        return [os.path.splitext(line.split(' ')[0])[0] for line in f if line.strip()]


def build_lmdb(folder: str, lmdb_path: str) -> bool:
    """Make ``lmdb_path`` (ending in ``.lmdb``) from the PNGs in ``folder``, keyed by file stem.

    Returns ``False`` if an up-to-date database was already there (nothing done), ``True`` if it was (re)built.
    """
    names = list_images(folder)
    keys = [os.path.splitext(name)[0] for name in names]
    if os.path.isdir(lmdb_path) and sorted(lmdb_keys(lmdb_path)) == sorted(keys):
        return False
    parent, base = os.path.split(os.path.abspath(lmdb_path))
    for leftover in glob.glob(os.path.join(parent, f'.{base}.*.tmp.lmdb')):
        shutil.rmtree(leftover)
    tmp = os.path.join(parent, f'.{base}.{os.getpid()}.tmp.lmdb')
    try:
        make_lmdb_from_imgs(folder, tmp, names, keys, multiprocessing_read=False)
        if os.path.isdir(lmdb_path):
            shutil.rmtree(lmdb_path)
        os.rename(tmp, lmdb_path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return True
