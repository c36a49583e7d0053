"""Crash-safe file writing: write to a temporary file in the same folder, flush, fsync, then rename.

A reader (or a resumed run) therefore sees either the previous complete file or the new complete file, never a
half-written one, even if the process is killed with SIGKILL in the middle of a write.
"""
import contextlib
import os
import tempfile
from typing import Any, Callable, Iterator

import torch

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def atomic_write(path: str, write: Callable[[Any], None], mode: str = 'wb') -> None:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then atomically rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes the file private (0600); give it the usual mode
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` that never leaves a partial file at ``path``."""
    atomic_write(path, lambda f: _ORIGINAL_TORCH_SAVE(obj, f))


_ORIGINAL_TORCH_SAVE = torch.save


@contextlib.contextmanager
def torch_save_is_atomic() -> Iterator[None]:
    """Within the block, ``torch.save(obj, path)`` (as called by BasicSR's ``BaseModel``) is atomic."""

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(f, (str, os.PathLike)) and not args and not kwargs:
            atomic_torch_save(obj, os.fspath(f))
        else:
            _ORIGINAL_TORCH_SAVE(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = _ORIGINAL_TORCH_SAVE
