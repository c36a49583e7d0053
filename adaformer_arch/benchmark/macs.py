"""Executed multiply-accumulates (MACs) and token sparsity of one inference, from one untimed profiling forward.

* AdaFormer: its own count, ``aux['macs']`` of ``forward(return_aux=True)`` (convolutions, linears and attention
  matmuls actually executed by the sparse path), minus ``aux['macs_for_aux']``, the confidence-estimator calls that
  only ``return_aux`` adds (the plain inference forward skips the estimator after the last block, and entirely
  without early exit).
  Sparsity: the fraction of halted tokens of ``aux['global_halted']``, averaged over the blocks.
* Other networks: forward hooks on every ``Conv2d`` and ``Linear`` (one MAC per weight per output position), plus
  the two attention matmuls (``q @ k^T``, ``attn @ v``) of BasicSR's SwinIR ``WindowAttention``. Element-wise
  operations, normalisations, softmax and interpolation are not counted.
"""
from dataclasses import dataclass
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from basicsr.archs.swinir_arch import WindowAttention as SwinWindowAttention

from ..archs.adaformer_arch import AdaFormer
from .networks import InputAdapter, bare

METHOD_ADAFORMER = "aux['macs'] (executed conv + linear + attention)"
METHOD_HOOKS = 'hooks: Conv2d + Linear'
METHOD_HOOKS_SWIN = 'hooks: Conv2d + Linear + Swin attention matmuls'
NOT_COUNTED = 'not counted: no Conv2d or Linear module ran (the network applies its weights in another way)'


@dataclass
class Profile:
    """What one profiling forward of a network on one input found."""
    macs: int
    macs_method: str
    output_shape: List[int]
    sparsity: Optional[float] = None  # mean fraction of halted tokens over the blocks (AdaFormer only)
    sparsity_per_block: Optional[List[float]] = None


def _conv_hook(module: nn.Conv2d, inputs, output: Tensor, add: Callable[[int], None]) -> None:
    kh, kw = module.kernel_size
    add(output.numel() * (module.in_channels // module.groups) * kh * kw)


def _linear_hook(module: nn.Linear, inputs, output: Tensor, add: Callable[[int], None]) -> None:
    add(output.numel() * module.in_features)


def _swin_attention_hook(module: nn.Module, inputs, output: Tensor, add: Callable[[int], None]) -> None:
    windows, tokens, channels = inputs[0].shape  # (B*nW, N, C)
    add(2 * windows * tokens * tokens * channels)


def _profile_with_hooks(net: nn.Module, lq: Tensor) -> Profile:
    total = [0]

    def add(n: int) -> None:
        total[0] += n

    hooks, method = [], METHOD_HOOKS
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            hook = _conv_hook
        elif isinstance(module, nn.Linear):
            hook = _linear_hook
        elif isinstance(module, SwinWindowAttention):
            hook, method = _swin_attention_hook, METHOD_HOOKS_SWIN
        else:
            continue
        hooks.append(module.register_forward_hook(lambda m, i, o, h=hook: h(m, i, o, add)))
    try:
        out = net(lq)
    finally:
        for handle in hooks:
            handle.remove()
    if not total[0] and any(True for _ in net.parameters()):  # e.g. weights applied with F.conv2d, not modules
        method = NOT_COUNTED
    return Profile(macs=total[0], macs_method=method, output_shape=list(out.shape))


def _profile_adaformer(net: AdaFormer, lq: Tensor) -> Profile:
    out, aux = net(lq, return_aux=True)
    depth = len(aux['global_halted'])
    macs = aux['macs'] - aux['macs_for_aux']
    per_block = [m.float().mean().item() for m in aux['global_halted']]
    return Profile(macs=int(macs), macs_method=METHOD_ADAFORMER, output_shape=list(out.shape),
                   sparsity=sum(per_block) / depth, sparsity_per_block=per_block)


@torch.no_grad()
def profile(net: nn.Module, lq: Tensor) -> Profile:
    """MACs (and sparsity for AdaFormer) of ``net(lq)``; ``lq`` is (B, C, h, w)."""
    inner = bare(net)
    if isinstance(inner, AdaFormer):
        result = _profile_adaformer(inner, net.prepare(lq) if isinstance(net, InputAdapter) else lq)
        if isinstance(net, InputAdapter):
            result.output_shape = list(net(lq).shape)
        return result
    return _profile_with_hooks(net, lq)
