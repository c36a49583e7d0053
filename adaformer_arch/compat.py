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
"""
import collections
import sys
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
    import os

    import torch.distributed as dist
    from basicsr.utils import dist_util

    original = dist_util._init_dist_pytorch

    def init_dist_pytorch(backend: str = 'nccl', **kwargs) -> None:
        if torch.cuda.is_available():
            original(backend, **kwargs)
            return
        # CPU-only: gloo is the backend that works without CUDA; RANK/WORLD_SIZE come from torchrun.
        int(os.environ['RANK'])
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
