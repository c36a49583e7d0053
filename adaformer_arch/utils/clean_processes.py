"""Worker processes that do not inherit the parent's thread pools.

A plain ``fork`` copies a process whose OpenMP (PyTorch) and OpenCV thread pools may be running, but not their
threads: the child can then wait forever on a lock or a thread that no longer exists. Seen once: the two workers
of ``basicsr prepare --workers 2``, forked from the long-lived process of a full test-suite run, stuck at 0 % CPU
(not reproduced in isolation; forking a threaded process is the known hazard). The forkserver starts children
from a fresh single-threaded server process (``adaformer_arch`` preloaded there, so a child starts in
milliseconds); spawn where there is no forkserver.
"""
import multiprocessing


def clean_context() -> multiprocessing.context.BaseContext:
    """A multiprocessing context whose children start without the caller's threads."""
    if 'forkserver' in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context('forkserver')
        ctx.set_forkserver_preload(['adaformer_arch'])
        return ctx
    return multiprocessing.get_context('spawn')
