"""The benchmark option file (e.g. options/bench_x4.yml), validated into plain dataclasses.

Layout::

    scale: 4
    sizes: [128x128, 480x270, 960x540]      # LR inputs, WIDTHxHEIGHT
    runs: 10                                 # timed runs per network and size
    warmup: 2                                # untimed runs per network and size
    input: demo/Set5/LR_bicubic/X4/baby.png  # optional; default: a synthetic image
    networks:
      - name: AdaFormer                      # display name, unique
        network_g: {type: AdaFormer, upscale: 4}
        weights: experiments/pretrained_models/AdaFormer_x4_cpu.pth   # or 'random' (default)
        param_key: params_ema                # optional; default params_ema, else params, else the whole file
        attributes: {halt_eps: 0.1}          # optional; set on the built network
        pad_to: 8                            # optional; reflect-pad inputs to a multiple, crop the output
        channels_last: true                  # optional; give the network a channels-last input
        dtype: bfloat16                      # optional; float32 (default), bfloat16, float16 (GPU only)
    train_throughput: {networks: [AdaFormer, SwinIR-light], batch_size: 16, lr_patch: 48, steps: 20, warmup: 3,
                       autocast: [bfloat16]}        # optional: also in mixed precision, as train.autocast
    tradeoff: {network: AdaFormer, halt_eps: [0.0, 0.05, 0.1, 0.2], references: [SwinIR-light]}
"""
import os
import re
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Dict, List, Optional, Tuple

import yaml

from ..option_checks.values import is_integer, is_number
from ..utils.precision import parse_autocast, parse_dtype

DEFAULT_SIZES = ('128x128', '480x270', '960x540')
RANDOM = 'random'


class BenchError(Exception):
    """A problem with the option file, the command line or a file they name; the message says what to do."""


@dataclass
class NetworkSpec:
    """One network of the benchmark."""
    name: str
    network_g: Dict[str, Any]
    weights: str = RANDOM  # a path, or 'random'
    param_key: Optional[str] = None
    attributes: Dict[str, Any] = field(default_factory=dict)
    pad_to: int = 1
    channels_last: bool = False
    dtype: str = 'float32'  # precision of weights and input: float32, bfloat16 or float16 (GPU)


@dataclass
class TrainThroughputSpec:
    networks: List[str]
    batch_size: int = 16
    lr_patch: int = 48
    steps: int = 20
    warmup: int = 3
    autocast: List[str] = field(default_factory=list)  # also train each network under autocast in these dtypes


@dataclass
class TradeoffSpec:
    network: str
    halt_eps: List[float]
    references: List[str] = field(default_factory=list)


@dataclass
class BenchOptions:
    path: str
    scale: int
    sizes: List[Tuple[int, int]]  # (width, height) of the LR input
    runs: int
    warmup: int
    networks: List[NetworkSpec]
    input: Optional[str] = None
    train_throughput: Optional[TrainThroughputSpec] = None
    tradeoff: Optional[TradeoffSpec] = None

    def network(self, name: str, where: str) -> NetworkSpec:
        for spec in self.networks:
            if spec.name == name:
                return spec
        names = ', '.join(s.name for s in self.networks)
        raise BenchError(f'{self.path}: {where} names network {name!r}, which is not in networks ({names})')


def parse_size(text: str) -> Tuple[int, int]:
    """'480x270' -> (480, 270), i.e. (width, height)."""
    match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', str(text))
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise BenchError(f'bad size {text!r}: write WIDTHxHEIGHT, e.g. 480x270')
    return int(match.group(1)), int(match.group(2))


def format_size(size: Tuple[int, int]) -> str:
    return f'{size[0]}x{size[1]}'


def _take(d: Any, cls, where: str) -> Dict:
    """``d`` checked as the keyword arguments of dataclass ``cls``: a mapping, no unknown key, every required one."""
    if not isinstance(d, dict):
        raise BenchError(f'{where} must be a mapping of {", ".join(cls.__dataclass_fields__)}, got {d!r}')
    known = set(cls.__dataclass_fields__)
    unknown = set(d) - known
    if unknown:
        raise BenchError(f'{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(known)}')
    missing = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
               and f.name not in d]
    if missing:
        raise BenchError(f'{where}: missing key(s) {missing}')
    return d


def _list(value: Any, where: str) -> List:
    """``value`` as a YAML list; a single value (``sizes: 16x16``) is refused instead of being read letter by
    letter."""
    if not isinstance(value, (list, tuple)):
        raise BenchError(f'{where} must be a list, e.g. [{value}], got {value!r}')
    return list(value)


def _positive(value: Any, where: str, minimum: int = 1) -> int:
    if not is_integer(value, minimum):
        raise BenchError(f'{where} must be an integer >= {minimum}, got {value!r}')
    return value


def _network(entry: Any, index: int, path: str) -> NetworkSpec:
    where = f'{path}: networks[{index}]'
    if not isinstance(entry, dict):
        raise BenchError(f'{where} must be a mapping with name and network_g')
    for key in ('name', 'network_g'):
        if key not in entry:
            raise BenchError(f'{where} has no {key!r}')
    spec = NetworkSpec(**_take(dict(entry, name=str(entry['name'])), NetworkSpec, where))
    if not isinstance(spec.network_g, dict) or 'type' not in spec.network_g:
        raise BenchError(f'{where} ({spec.name}): network_g must be a mapping with a type, as in BasicSR options')
    spec.weights = RANDOM if spec.weights in (None, RANDOM) else str(spec.weights)
    if not isinstance(spec.attributes or {}, dict):
        raise BenchError(f'{where} ({spec.name}): attributes must be a mapping, e.g. {{halt_eps: 0.1}}, got '
                         f'{spec.attributes!r}')
    spec.attributes = dict(spec.attributes or {})
    spec.pad_to = _positive(spec.pad_to, f'{where} ({spec.name}): pad_to')
    if not isinstance(spec.channels_last, bool):
        raise BenchError(f'{where} ({spec.name}): channels_last must be true or false')
    try:
        parse_dtype(spec.dtype)
    except ValueError as err:
        raise BenchError(f'{where} ({spec.name}): dtype {err}') from None
    if spec.network_g['type'] == 'Bicubic' and spec.dtype != 'float32':
        raise BenchError(f'{where} ({spec.name}): Bicubic has no weights and always runs in float32; remove '
                         f'dtype: {spec.dtype}')
    return spec


def load_options(path: str) -> BenchOptions:
    """Read and validate a benchmark option file."""
    if not os.path.isfile(path):
        raise BenchError(f'option file {path} not found')
    with open(path, encoding='utf-8') as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        raise BenchError(f'{path}: expected a mapping at the top level')
    allowed = {'scale', 'sizes', 'runs', 'warmup', 'input', 'networks', 'train_throughput', 'tradeoff'}
    unknown = set(raw) - allowed
    if unknown:
        raise BenchError(f'{path}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}')
    networks = [_network(entry, i, path) for i, entry in enumerate(raw.get('networks') or [])]
    if not networks:
        raise BenchError(f'{path}: lists no networks')
    names = [n.name for n in networks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BenchError(f'{path}: network names must be unique, repeated: {duplicates}')
    opts = BenchOptions(
        path=path,
        scale=_positive(raw.get('scale', 4), f'{path}: scale'),
        sizes=[parse_size(s) for s in _list(raw.get('sizes') or list(DEFAULT_SIZES), f'{path}: sizes')],
        runs=_positive(raw.get('runs', 10), f'{path}: runs'),
        warmup=_positive(raw.get('warmup', 2), f'{path}: warmup', minimum=0),
        networks=networks,
        input=raw.get('input'),
    )
    if raw.get('train_throughput'):
        spec = TrainThroughputSpec(**_take(raw['train_throughput'], TrainThroughputSpec, f'{path}: train_throughput'))
        spec.networks = _list(spec.networks, f'{path}: train_throughput.networks')
        spec.autocast = _list(spec.autocast, f'{path}: train_throughput.autocast')
        for key in ('batch_size', 'lr_patch', 'steps'):
            _positive(getattr(spec, key), f'{path}: train_throughput.{key}')
        _positive(spec.warmup, f'{path}: train_throughput.warmup', minimum=0)
        for name in spec.autocast:
            try:
                parse_autocast(name)
            except ValueError as err:
                raise BenchError(f'{path}: train_throughput.autocast: {err}') from None
        for name in spec.networks:
            if opts.network(name, 'train_throughput.networks').dtype != 'float32':
                raise BenchError(f'{path}: train_throughput.networks: {name} is not float32; training throughput '
                                 f'is measured in float32, list a float32 entry')
        opts.train_throughput = spec
    if raw.get('tradeoff'):
        spec = TradeoffSpec(**_take(raw['tradeoff'], TradeoffSpec, f'{path}: tradeoff'))
        spec.halt_eps = _list(spec.halt_eps, f'{path}: tradeoff.halt_eps')
        spec.references = _list(spec.references, f'{path}: tradeoff.references')
        if opts.network(spec.network, 'tradeoff.network').network_g['type'] != 'AdaFormer':
            raise BenchError(f'{path}: tradeoff.network must be an AdaFormer entry (its halt_eps is swept)')
        bad = [e for e in spec.halt_eps if not (is_number(e, 0.0) and e < 1.0)]
        if not spec.halt_eps or bad:
            raise BenchError(f'{path}: tradeoff.halt_eps must be a non-empty list of values in [0, 1), bad: {bad}')
        spec.halt_eps = [float(e) for e in spec.halt_eps]
        for name in spec.references:
            opts.network(name, 'tradeoff.references')
        opts.tradeoff = spec
    return opts
