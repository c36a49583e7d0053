"""Inference (and mixed-precision training, ``train.autocast``) in a lower floating-point precision: bfloat16
(CPUs with AVX512-BF16 or AMX, and GPUs) or float16 (GPUs only: PyTorch's float16 convolutions on a CPU without
native support are an order of magnitude slower).

This project's networks with weights (AdaFormer, its conv floor) are cast whole, once (a copy where the float32
weights are still needed, as in training): the input is cast on the way in and every floating-point output back to
float32 on the way out, so images, metrics and halting maps are computed from float32 tensors as usual. Bicubic
has no weights and always runs in float32: it is the quality reference, and a lower precision would only round
it. AdaFormer
accumulates the confidences (``token_halting.HaltingState``) and the prototypes' softmax sums
(``PrototypeAttention.gather_prototypes``) in float32 in any precision, so its halting decisions move only as much
as the confidences do, and sums over millions of tokens do not overflow float16. Other networks run under
``torch.autocast`` instead, as their own code may create float32 tensors at run time (BasicSR's SwinIR builds its
attention mask so for every new input size).
"""
import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..archs import AdaFormer, AdaFormerConvFloor, Bicubic

DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def parse_dtype(name: Any) -> torch.dtype:
    """'float32' / 'bfloat16' / 'float16' -> the torch dtype; ValueError naming the choices otherwise."""
    if name not in DTYPES:
        raise ValueError(f'must be one of {", ".join(DTYPES)}, got {name!r}')
    return DTYPES[name]


def parse_autocast(name: Any) -> torch.dtype:
    """``train.autocast``: 'float32' (off) or 'bfloat16'; float16 training would need a gradient scaler (and its
    state in the training states), so it is refused."""
    dtype = parse_dtype(name)
    if dtype == torch.float16:
        raise ValueError('float16 training needs loss scaling, which is not supported; use bfloat16 (GPUs from '
                         'Ampere on, CPUs with AVX512-BF16 or AMX)')
    return dtype


def check_device(dtype: torch.dtype, device: torch.device) -> None:
    """ValueError for float16 on the CPU (it runs, but many times slower than float32)."""
    if dtype == torch.float16 and device.type == 'cpu':
        raise ValueError('float16 is for GPUs (on the CPU it is many times slower than float32); use bfloat16 on '
                         'the CPU (fast on CPUs with AVX512-BF16 or AMX)')


def network_dtype(net: nn.Module) -> torch.dtype:
    """The dtype of ``net``'s floating-point parameters; float32 for a network without any (e.g. Bicubic)."""
    return next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)


def mixed_precision(device_type: str, dtype: torch.dtype) -> torch.autocast:
    """``torch.autocast`` in ``dtype`` on ``device_type``; off for float32."""
    return torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)


class Autocast(nn.Module):
    """``net`` run under ``torch.autocast(dtype)`` on the device of its input (its weights stay float32)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: Tensor, **kwargs) -> Any:
        with mixed_precision(x.device.type, self.dtype):
            return self.net(x, **kwargs)


def in_precision(net: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``net`` for inference in ``dtype``: itself for float32 and for Bicubic (no weights: always float32); a copy
    cast whole for this project's networks with weights; else ``net`` under :class:`Autocast`. Call it through
    :func:`forward_in_own_dtype`."""
    if dtype == torch.float32 or isinstance(net, Bicubic):
        return net
    if isinstance(net, (AdaFormer, AdaFormerConvFloor)):
        return copy.deepcopy(net).to(dtype)
    return Autocast(net, dtype)


def to_float32(value: Any) -> Any:
    """Floating-point tensors (also inside tuples, lists and dicts) -> float32; anything else unchanged."""
    if isinstance(value, Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_float32(v) for v in value)
    if isinstance(value, dict):
        return {k: to_float32(v) for k, v in value.items()}
    return value


def forward_in_own_dtype(net: nn.Module, lq: Tensor, **kwargs) -> Any:
    """``net(lq, **kwargs)`` with ``lq`` cast to the network's dtype and the results cast back to float32."""
    return to_float32(net(lq.to(network_dtype(net)), **kwargs))
