"""Compatibility fixes for basicsr 1.4.2 (the PyPI release) on current PyTorch/torchvision.

Everything here patches *in memory*, never site-packages, and is applied once, when ``adaformer_arch`` is
imported (before anything imports ``basicsr``):

1. ``basicsr.data.degradations`` imports ``torchvision.transforms.functional_tensor``, a module torchvision removed
   in 0.17. We register a stand-in module that forwards to ``torchvision.transforms.functional``.
2. ``basicsr.utils.dist_util._init_dist_pytorch`` calls ``torch.cuda.set_device`` and defaults to NCCL, so
   ``--launcher pytorch`` cannot start on a CPU-only machine. Without CUDA we initialise a gloo process group.
3. ``basicsr.models.base_model.BaseModel.model_to_device`` wraps networks in DDP with ``device_ids=[cuda]``; on
   CPU ``device_ids`` must be ``None``.
4. Training states hold scheduler ``Counter`` objects: we allow-list ``collections.Counter`` so that states load with
   ``torch.load(weights_only=True)`` (the default since torch 2.6), i.e. without running pickled code.

Resuming (BasicSR's ``load_resume_state`` maps storages to CUDA) is replaced in :mod:`adaformer_arch.train`.

A gloo (CPU DDP) rank can abort with SIGABRT in interpreter shutdown after BasicSR's pipelines return: ``basicsr
train``/``test`` end distributed ranks with :func:`exit_distributed_rank` (docs/reliability.md, "DDP shutdown").
"""
import atexit
import collections
import os
import sys
import threading
import types

import torch

_APPLIED = False


def _shim_functional_tensor() -> None:
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401
    except ImportError:
        import torchvision.transforms.functional as tv_functional

        shim = types.ModuleType('torchvision.transforms.functional_tensor')
        shim.rgb_to_grayscale = tv_functional.rgb_to_grayscale
        sys.modules['torchvision.transforms.functional_tensor'] = shim


def _patch_dist() -> None:
    import torch.distributed as dist
    from basicsr.utils import dist_util

    original = dist_util._init_dist_pytorch

    def init_dist_pytorch(backend: str = 'nccl', **kwargs) -> None:
        if torch.cuda.is_available():
            original(backend, **kwargs)
            return
        # CPU-only: gloo is the backend that works without CUDA; init_process_group reads RANK/WORLD_SIZE/
        # MASTER_ADDR from the environment torchrun sets
        if 'RANK' not in os.environ:  # outside torchrun: the KeyError of BasicSR's own launcher, which the option
            raise KeyError('RANK')  # checks turn into a message (option_checks._missing_key)
        dist.init_process_group(backend='gloo', **kwargs)

    dist_util._init_dist_pytorch = init_dist_pytorch


def _patch_model_to_device() -> None:
    from torch.nn.parallel import DistributedDataParallel

    from basicsr.models.base_model import BaseModel

    original = BaseModel.model_to_device

    def model_to_device(self, net: torch.nn.Module) -> torch.nn.Module:
        if self.opt['dist'] and self.device.type == 'cpu':
            net = net.to(self.device)
            return DistributedDataParallel(
                net, device_ids=None, find_unused_parameters=self.opt.get('find_unused_parameters', False))
        return original(self, net)

    BaseModel.model_to_device = model_to_device


def exit_distributed_rank(status: int = 0) -> None:
    """In a distributed run (a default process group exists): destroy the group, do what Python does before its
    shutdown (wait for non-daemon threads, run the ``atexit`` handlers: the log files' ``logging.shutdown``, wandb's
    finish, ...), flush the standard streams and end the process with ``status``, without interpreter shutdown.
    Otherwise return.

    A gloo worker thread frees a finished collective after the caller has moved on, and freeing its tensors takes
    the GIL. A rank that reaches interpreter shutdown while such a thread waits for the GIL gets the thread ended by
    Python, whose unwinding passes a ``noexcept`` destructor: ``std::terminate``, SIGABRT, and torchrun fails the
    job although the run had finished. Neither ``destroy_process_group()`` nor a final ``barrier()`` prevents it
    (DDP keeps the group and its threads alive; measured in docs/reliability.md), skipping the shutdown does.
    Call it only after a pipeline returned normally.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # CPython's own pre-shutdown step (private name, present since Python 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def apply() -> None:
    """Apply all fixes (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _shim_functional_tensor()
    torch.serialization.add_safe_globals([collections.Counter])
    _patch_dist()
    _patch_model_to_device()
    _APPLIED = True
