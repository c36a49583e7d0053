"""Checks of the networks: arguments of ``network_*`` and of the losses ``train.*_opt`` against their constructors
(unknown, missing, wrongly typed), ``network_g`` built (its own value checks), ``path.pretrain_network_g`` (and the
checkpoint a resumed run starts from) loaded and fitted to it, ``scale`` against ``network_g.upscale``,
AdaFormerModel's ``tile`` block, ``val.dtype`` and ``train.autocast``, and distributed training that would leave
AdaFormer's confidence estimator without a gradient."""
import inspect
import os
from os import path as osp
from typing import Any, Dict, List, Optional, Tuple

import torch

from basicsr.utils.registry import ARCH_REGISTRY

from ..archs.adaformer_arch import AdaFormer
from ..utils.precision import check_device, parse_autocast, parse_dtype
from ..utils.weights import WeightsError, checkpoint_entry, listing, mismatches, read_checkpoint
from .values import _has_type, _unquote_hint, closest, is_integer, is_number, registered


def check_constructor(where: str, cfg: Dict, registry: Any, kind: str) -> List[str]:
    """Unknown and missing constructor arguments of ``cfg`` (``type`` plus arguments)."""
    name = cfg.get('type')
    if not registered(registry, name):
        return [f'{where}.type: no {kind} named {name!r} is registered{closest(str(name), registry.keys())}']
    params = inspect.signature(registry.get(name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    accepted = [n for n, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL]
    problems = [
        f'{where}.{key}: {name} has no argument {key!r}{closest(key, accepted)} '
        f'({name} takes: {", ".join(accepted)})' for key in cfg if key != 'type' and key not in params
    ]
    problems += [
        f'{where}: {name} needs the argument {n!r}; add it' for n, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_POSITIONAL and n not in cfg
    ]
    problems += [f'{where}.{key}: {name} takes {SIMPLE_TYPES[params[key].annotation]} for {key}, got {value!r}'
                 f'{_unquote_hint(value, params[key].annotation)}' for key, value in cfg.items()
                 if key in params and not _fits(value, params[key])]
    return problems


# annotations of constructor arguments that are checked against the option's value (YAML gives these types)
SIMPLE_TYPES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}


def _fits(value: Any, param: inspect.Parameter) -> bool:
    """``value`` suits the argument's annotation (only bool, int, float and str are checked; a None default also
    takes None)."""
    return (param.annotation not in SIMPLE_TYPES or (value is None and param.default is None)
            or _has_type(value, param.annotation))


def _build_network_g(cfg: Dict) -> Tuple[Optional[torch.nn.Module], List[str]]:
    """``network_g`` built from the registry's class (its own value checks: ``halt_eps: 1.5``, ...) -> the network,
    or None and why it cannot be built."""
    # the registry's class directly: basicsr.archs.build_network would log, and a root logger created before
    # BasicSR's pipeline creates it with the log file would leave the run without its log file
    # in a forked generator state: parse_options has seeded the generators, and BasicSR's own build must draw the
    # same initial weights as without this check
    kwargs = {k: v for k, v in cfg.items() if k != 'type'}
    try:
        with torch.random.fork_rng(devices=[]):
            return ARCH_REGISTRY.get(cfg['type'])(**kwargs), []
    except Exception as err:  # whatever the constructor raises, the run could not start
        return None, [f'network_g: {cfg["type"]} cannot be built from these arguments: {type(err).__name__}: {err}']


def _check_pretrained(opt: Dict, network: torch.nn.Module) -> List[str]:
    """``path.pretrain_network_g`` exists, loads as plain weights with ``param_key_g`` as BasicSR reads it (and, for
    training with EMA, with ``params_ema``) and, with ``strict_load_g`` (BasicSR's default), fits ``network`` (built
    from ``network_g``)."""
    path_opt = opt.get('path') or {}
    weights = path_opt.get('pretrain_network_g')
    if not weights and not opt.get('is_train', True) and any(True for _ in network.parameters()):
        return ['path.pretrain_network_g is not set: the test would run network_g with random weights. Give the '
                'weights file (e.g. experiments/<name>/models/net_g_latest.pth, with param_key_g: params_ema)']
    if not weights:
        return []
    if osp.isdir(weights):
        return [f'path.pretrain_network_g: {weights} is a folder; give the weights file in it (a .pth).']
    if not osp.isfile(weights):
        return [f'path.pretrain_network_g: {weights} does not exist (relative paths start from the working directory '
                f'{os.getcwd()}). Fix the path, or set it to ~ to start from random weights.']
    key = path_opt.get('param_key_g', 'params')  # SRModel's default
    try:
        checkpoint = read_checkpoint(weights)
        key_problems = _param_key_problems(opt, weights, checkpoint, key)
        if key_problems:
            return key_problems
        state = checkpoint_entry(weights, checkpoint, key)
    except WeightsError as err:
        return [f'path.pretrain_network_g: {err}']
    lines = mismatches(network, state)
    if not lines:
        return []
    if path_opt.get('strict_load_g', True):
        advice = ' (to train from the tensors that fit, e.g. from another scale, set strict_load_g: false)' \
            if opt.get('is_train') else ''
        return [f'path.pretrain_network_g: {weights} does not fit network_g{advice}:\n    ' + '\n    '.join(lines)]
    untrained = [line for line in lines if not line.startswith('not in the network')]
    if opt.get('is_train') or not untrained:
        return []  # fine-tuning from what fits; a test ignores only the checkpoint's extra tensors
    return [f'path.pretrain_network_g: {weights} does not fit network_g; with strict_load_g: false this test would '
            'run with the tensors below at their random initial values:\n    ' + '\n    '.join(untrained)]


def check_resume_network(opt: Dict, model_file: str) -> List[str]:
    """The network checkpoint of the training state a run resumes from fits ``network_g``, as BasicSR will load it
    (``param_key_g``, ``strict_load_g``). A run resumed with another option file under the same ``name`` (an x3
    experiment resumed by the x2 options, say) would otherwise stop with a traceback in BasicSR's ``load_network``,
    after writing its option file and log into the experiment folder."""
    cfg = opt.get('network_g')
    if not isinstance(cfg, dict) or 'type' not in cfg or not opt['path'].get('strict_load_g', True):
        return []
    network, _ = _build_network_g(cfg)
    if network is None:
        return []  # reported by the option checks
    try:
        state = checkpoint_entry(model_file, read_checkpoint(model_file), opt['path'].get('param_key_g', 'params'))
    except WeightsError as err:
        return [str(err)]
    lines = mismatches(network, state)
    if not lines:
        return []
    return [f"its network checkpoint {model_file} does not fit network_g: experiment {opt['name']} was trained "
            'with another network. Resume it with the option file it was trained with, or give this run another '
            'name (name: ..., or --force_yml name=...):\n    ' + '\n    '.join(lines)]


def _check_network_for_model(opt: Dict, network: torch.nn.Module) -> List[str]:
    """AdaFormerModel's ``train.uncertainty_opt`` trains AdaFormer's confidence estimator: another network has
    none (the model would stop with a traceback once the experiment folder exists)."""
    train = opt.get('train') or {}
    if (opt.get('is_train', True) and opt.get('model_type') == 'AdaFormerModel' and train.get('uncertainty_opt')
            and not isinstance(network, AdaFormer)):
        return [f'train.uncertainty_opt trains the confidence estimator of AdaFormer; network_g '
                f'{opt["network_g"].get("type")} has none: remove uncertainty_opt for this network']
    return []


def _param_key_problems(opt: Dict, weights: str, checkpoint: Dict, key: Optional[str]) -> List[str]:
    """``param_key_g`` against the entries of the checkpoint, where BasicSR's ``load_network`` would fail (a key
    the file lacks, no key for a BasicSR file) or silently load ``params`` instead of a misspelt key; training with
    EMA also loads ``params_ema`` (or ``params``) into the EMA network."""
    entries = sorted(map(str, checkpoint))
    basicsr_file = any(isinstance(checkpoint.get(k), dict) for k in ('params', 'params_ema'))
    plain = all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    has = f'(it has: {listing(entries)})'
    if {'optimizers', 'iter'} <= set(checkpoint):
        return [f'path.pretrain_network_g: {weights} is a training state (optimizers, schedulers, iteration: for '
                'path.resume_state or --auto_resume), not weights; give the weights file saved with it '
                '(experiments/<name>/models/net_g_<iter>.pth)']
    if key is None:
        if basicsr_file:
            return [f'path.param_key_g is ~ (load the file as it is), but {weights} holds the entries '
                    f'{", ".join(entries)}: set param_key_g to one of them']
    elif key not in checkpoint and 'params' in checkpoint and key != 'params_ema':
        return [f'path.param_key_g: {weights} has no entry {key!r} {has}; BasicSR would load \'params\' instead '
                f'without an error. Set param_key_g to one of its entries{closest(key, entries)}']
    elif key not in checkpoint and 'params' not in checkpoint:
        if plain:
            return [f'path.param_key_g is {key!r}, but {weights} is a plain state dict (no entries params / '
                    "params_ema): set param_key_g: ~ to load it as it is, or re-save it as {'params': state_dict}"]
        return [f'path.param_key_g: {weights} has no entry {key!r} {has}: set param_key_g to one of them']
    ema = (opt.get('train') or {}).get('ema_decay', 0)
    if opt.get('is_train') and is_number(ema, 0) and ema > 0 and not basicsr_file:
        return [f'path.pretrain_network_g: {weights} is a plain state dict, and with train.ema_decay BasicSR loads '
                "the EMA network from its 'params_ema' (or 'params') entry, which it lacks: re-save it as "
                "{'params': state_dict}, or set ema_decay: 0"]
    return []


def _network_argument(opt: Dict, name: str) -> Any:
    """``network_g.<name>`` as given, else the registered network's default; None if neither exists."""
    cfg = opt.get('network_g')
    if not isinstance(cfg, dict):
        return None
    if name in cfg:
        return cfg[name]
    if not registered(ARCH_REGISTRY, cfg.get('type')):
        return None
    param = inspect.signature(ARCH_REGISTRY.get(cfg['type'])).parameters.get(name)
    return None if param is None or param.default is inspect.Parameter.empty else param.default


def check_scale(opt: Dict) -> List[str]:
    """``scale`` is a positive integer and equals ``network_g.upscale`` (given, or the network's default)."""
    if 'scale' in opt and not is_integer(opt['scale'], 1):
        return [f'scale: must be a positive integer, got {opt["scale"]!r}{_unquote_hint(opt["scale"], int)}']
    upscale = _network_argument(opt, 'upscale')
    if upscale is None:
        return []
    cfg = opt['network_g']
    given = 'network_g.upscale' if 'upscale' in cfg else f"network_g.upscale (the default of {cfg['type']})"
    if 'scale' not in opt:
        return [f'scale is missing; add "scale: {upscale}" (it must equal {given})']
    if upscale != opt['scale']:
        return [f'scale is {opt["scale"]} but {given} is {upscale}: the network would upsample by {upscale} '
                f'while the data sets are cut for x{opt["scale"]}. Make them equal.']
    return []


TILE_KEYS = ('tile_size', 'tile_pad')


def _check_tile(opt: Dict) -> List[str]:
    """``tile: {tile_size, tile_pad}``: a positive tile size, a multiple of the network's attention window (so the
    windows of every tile coincide with those of the whole image), and a non-negative pad."""
    tile = opt.get('tile')
    if tile is None:
        return []
    if not isinstance(tile, dict):
        return [f'tile: expected a block like "tile: {{tile_size: 256, tile_pad: 32}}", got {tile!r}']
    problems = [f'tile.{key}: no such option{closest(key, TILE_KEYS)} (tile takes: {", ".join(TILE_KEYS)})'
                for key in tile if key not in TILE_KEYS]
    size, pad = tile.get('tile_size'), tile.get('tile_pad', 0)
    window = _network_argument(opt, 'window_size')
    window = window if is_integer(window, 1) else 1
    if not is_integer(size, 1) or size % window:
        hint = f' (e.g. {max(window, (size // window) * window)})' if is_integer(size, 1) else ''
        problems.append(f'tile.tile_size: must be a positive multiple of the network\'s window size {window} in LR '
                        f'pixels, got {size!r}{hint}')
    if not is_integer(pad, 0):
        problems.append(f'tile.tile_pad: must be an integer >= 0 (LR pixels of context around each tile), '
                        f'got {pad!r}')
    return problems


def _check_precision(opt: Dict) -> List[str]:
    """``val.dtype``: a known precision, float16 only with a GPU; ``train.autocast``: float32 or bfloat16."""
    problems = []
    name = (opt.get('val') or {}).get('dtype')
    if name is not None:
        try:
            check_device(parse_dtype(name), torch.device('cuda' if opt.get('num_gpu', 0) else 'cpu'))
        except ValueError as err:
            problems.append(f'val.dtype: {err}')
    name = (opt.get('train') or {}).get('autocast')
    if name is not None:
        try:
            parse_autocast(name)
        except ValueError as err:
            problems.append(f'train.autocast: {err}')
    return problems


def _trains_without_usl(opt: Dict) -> bool:
    """AdaFormer is trained without L_USL (another model_type, or no ``train.uncertainty_opt``): only L_USL trains
    its confidence estimator."""
    network = opt.get('network_g')
    if not opt.get('is_train', True) or not isinstance(network, dict) or network.get('type') != 'AdaFormer':
        return False
    return not (opt.get('model_type') == 'AdaFormerModel' and (opt.get('train') or {}).get('uncertainty_opt'))


def _check_unused_estimator(opt: Dict) -> List[str]:
    """Distributed training of AdaFormer without L_USL: the confidence estimator runs but gets no gradient, and DDP
    without ``find_unused_parameters`` stops at the second iteration."""
    if not _trains_without_usl(opt) or not opt.get('dist') or opt.get('find_unused_parameters'):
        return []
    return ['network_g AdaFormer is trained distributed without its uncertainty loss: its confidence estimator then '
            'gets no gradient, and DDP stops at the second iteration. Add train.uncertainty_opt (model_type: '
            'AdaFormerModel) to train the estimator, or "find_unused_parameters: true" at the top level of the '
            'option file.']


def _warn_estimator_only_from_scratch(opt: Dict) -> List[str]:
    """A warning for ``train.estimator_only`` without weights to start from: the estimator would learn the errors of
    a random network, which stays random."""
    path = opt.get('path') or {}
    if (opt.get('is_train', True) and (opt.get('train') or {}).get('estimator_only') is True
            and not path.get('pretrain_network_g') and not path.get('resume_state') and not opt.get('auto_resume')):
        return ['train.estimator_only trains only the confidence estimator, but path.pretrain_network_g is not set: '
                'the rest of the network stays random. Set it to the trained weights whose estimator you train.']
    return []


def _warn_untrained_estimator(opt: Dict) -> List[str]:
    """A warning for AdaFormer trained without L_USL (e.g. swapped into an SRModel experiment): the run works, but
    the estimator keeps its initial (or loaded) weights, so tokens do not learn to halt."""
    if not _trains_without_usl(opt):
        return []
    return [f'network_g AdaFormer is trained without its uncertainty loss (model_type {opt.get("model_type")}'
            f'{"" if opt.get("model_type") == "AdaFormerModel" else ", which has none"}): its confidence estimator '
            'gets no gradient and keeps its initial or loaded weights, so tokens do not learn to halt and inference '
            'gets no early-exit speed-up. To train it: model_type AdaFormerModel with train.uncertainty_opt: {type: '
            'UncertaintyLoss, loss_weight: 1.0} (as options/train_adaformer_x4.yml).']
