"""Build a benchmark network from its :class:`NetworkSpec`: BasicSR registry, weights, attribute overrides."""
import copy
import math
import os

import torch
from torch import Tensor, nn

from basicsr.utils.registry import ARCH_REGISTRY

from ..archs.adaformer_arch import channels_last, pad_to_multiple
from ..option_checks.values import is_number
from ..utils.precision import Autocast, in_precision, network_dtype, parse_dtype
from ..utils.weights import WeightsError, load_weights
from .options import RANDOM, BenchError, NetworkSpec


class InputAdapter(nn.Module):
    """Feeds ``net`` the way its own test code would: reflect-pads (B, C, h, w) at the bottom/right to multiples of
    ``pad_to`` (as SwinIR's test script does for windowed networks that do not pad) and/or hands it a channels-last
    input (convolutions then keep that layout) in the network's precision (``dtype``), and crops the
    (B, C', h*s, w*s) output back to a contiguous float32 tensor."""

    def __init__(self, net: nn.Module, pad_to: int, channels_last: bool, scale: int) -> None:
        super().__init__()
        self.net = net
        self.pad_to = pad_to
        self.channels_last = channels_last
        self.scale = scale

    def prepare(self, lq: Tensor) -> Tensor:
        """(B, C, h, w) float32 -> the padded, channels-last and/or cast input that ``net`` is given."""
        x = pad_to_multiple(lq, self.pad_to).to(network_dtype(self.net))
        return channels_last(x) if self.channels_last else x

    def forward(self, lq: Tensor) -> Tensor:
        h, w = lq.shape[-2:]
        x = self.prepare(lq)
        out = self.net(x)
        if out.shape[-2:] != (x.shape[-2] * self.scale, x.shape[-1] * self.scale):  # before the crop could hide it
            raise BenchError(f'{type(self.net).__name__} upsamples its padded {x.shape[-2]}x{x.shape[-1]} input to '
                             f'{out.shape[-2]}x{out.shape[-1]}, not by the scale {self.scale}; check network_g '
                             '(upscale)')
        return out[..., :h * self.scale, :w * self.scale].float().contiguous()


def bare(net: nn.Module) -> nn.Module:
    """The registry network inside an :class:`InputAdapter` and/or :class:`Autocast` (or ``net`` itself)."""
    while isinstance(net, (InputAdapter, Autocast)):
        net = net.net
    return net


RANDOM_WEIGHTS_SEED = 0


def build(spec: NetworkSpec, scale: int, random_weights: bool, where: str) -> nn.Module:
    """The network of ``spec`` in eval mode on the CPU, in ``spec.dtype`` (``in_precision``; inside an
    :class:`InputAdapter` where it needs padding, channels-last or another precision). ``where`` names the option
    file in error messages. Random weights are drawn from ``RANDOM_WEIGHTS_SEED``, whatever was built before: an
    entry has the same ones in the benchmark process and in the memory subprocess."""
    opt = copy.deepcopy(spec.network_g)
    arch = opt.pop('type')
    try:
        cls = ARCH_REGISTRY.get(arch)
    except KeyError:
        raise BenchError(f'{where}: network {spec.name!r}: no arch {arch!r} in BasicSR\'s ARCH_REGISTRY; check '
                         f'network_g.type (arches register when their module is imported)') from None
    try:
        with torch.random.fork_rng(devices=[]):  # the same random weights for one entry in every process and order
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            net = cls(**opt)
    except TypeError as e:
        raise BenchError(f'{where}: network {spec.name!r}: bad network_g arguments for {arch}: {e}') from None
    if spec.weights != RANDOM and not random_weights:
        if not os.path.isfile(spec.weights):
            raise BenchError(
                f'{where}: network {spec.name!r}: weights file {spec.weights} not found. Put the trained weights '
                f'there, or benchmark random weights with "weights: random" in this entry or --random-weights '
                f'(AdaFormer\'s latency depends on its weights through token halting: random weights do not give '
                f'representative numbers for it).')
        try:
            load_weights(net, spec.weights, spec.param_key, network_desc=arch)
        except WeightsError as e:
            raise BenchError(f'{where}: network {spec.name!r}: {e}') from None
    for key, value in spec.attributes.items():
        if not hasattr(net, key):
            raise BenchError(f'{where}: network {spec.name!r}: attributes.{key}: {arch} has no attribute {key!r}')
        current = getattr(net, key)
        if isinstance(current, (bool, int, float)) and type(value) is not type(current) and not (
                isinstance(current, float) and is_number(value, -math.inf)):
            raise BenchError(f'{where}: network {spec.name!r}: attributes.{key}: {arch} holds a '
                             f'{type(current).__name__} there ({current!r}), got {value!r}')
        setattr(net, key, value)
    dtype = parse_dtype(spec.dtype)
    if spec.pad_to > 1 or spec.channels_last or dtype != torch.float32:
        net = InputAdapter(in_precision(net, dtype), spec.pad_to, spec.channels_last, scale)
    return net.eval()


def uses_random_weights(spec: NetworkSpec, net: nn.Module, random_weights: bool) -> bool:
    """True when a network with parameters runs with its initial (random) weights."""
    has_params = any(True for _ in net.parameters())
    return has_params and (random_weights or spec.weights == RANDOM)
