"""Checks of a parsed BasicSR option dict, run by `basicsr train` and `basicsr test` before anything is built.

BasicSR reports most option mistakes late (after the data sets are loaded, or at the first validation) and as a
traceback, or not at all (a misspelled optional key is silently ignored). These checks find, all at once:

* arguments of ``network_*`` and of the losses ``train.*_opt`` that their constructors do not take (compared with
  the signature, with the closest name suggested), required arguments that are missing, and values of the wrong
  type where the constructor is annotated ``bool``/``int``/``float``/``str`` (``early_exit: 'false'`` would be
  true); then ``network_g`` is built, so its own value checks (``halt_eps: 1.5``) run before anything else;
* options only AdaFormerModel reads (``tile``, ``val.dtype``, ``train.uncertainty_opt``, ...) under another
  ``model_type``, which would ignore them;
* for training: an optimiser or scheduler basicsr 1.4.2 does not build, a learning rate or ``total_iter`` that is
  not a number, batch options that are not integers, a ``gt_size`` that is not a multiple of the scale, restart
  schedulers whose ``restart_weights`` do not match, cosine ``periods`` that end before ``total_iter``;
* data set and metric ``type``s that are not registered, a ``PairedImageDataset`` without its folders, and
  ``num_gpu`` above 0 on a machine without CUDA, ``num_gpu: 0`` in an NCCL (GPU-only) distributed run;
* a ``PairedImageDataset`` training set that does not fill one batch (BasicSR would end without training), and a
  warning where its size makes training end more than 1 % short of ``total_iter``;
* ``--force_yml`` entries for a block the file lacks or without ``=``, ``--launcher pytorch`` outside torchrun;
* for ``model_type: AdaFormerModel``, keys of ``train`` and ``val`` that it does not read: an error when the key is
  a near miss of one it reads (``uncertainty_opts``), a warning otherwise (BasicSR ignores it);
* ``scale`` disagreeing with ``network_g.upscale`` (given, or the network's default);
* distributed training of AdaFormer without ``train.uncertainty_opt`` and without ``find_unused_parameters`` (its
  confidence estimator would get no gradient, which DDP refuses);
* for ``model_type: AdaFormerModel``, a ``tile`` block (tiled testing) whose keys or values it cannot use, and a
  ``val.dtype`` / ``train.autocast`` that is not a known precision (or float16 without a GPU / for training);
* ``path.pretrain_network_g`` that does not exist, cannot be loaded as plain weights, or (with ``strict_load_g``)
  does not fit ``network_g``: every tensor that disagrees is named (BasicSR would fail with a traceback later);
* data set folders and files that do not exist, a ``filename_tmpl`` that names nothing, image folders that do not
  pair up (each image without its partner named), and image pairs of a ``PairedImageDataset`` whose sizes do not
  match the scale, or are smaller than ``gt_size`` (read from the image headers or the LMDB ``meta_info.txt``, not by
  decoding), or whose header cannot be read (for `basicsr test` these are left to
  :mod:`adaformer_arch.data.test_pairs`, which skips them).
"""
import argparse
import difflib
import functools
import inspect
import math
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from os import path as osp
from typing import Any, Callable, Dict, Iterable, List, NoReturn, Optional, Tuple

import torch
import yaml
from PIL import Image

from basicsr.data.data_util import (paired_paths_from_folder, paired_paths_from_lmdb,
                                    paired_paths_from_meta_info_file)
from basicsr.utils import scandir
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY

from .data.image_io import hr_fits_lr
from .utils.output_folder import folder_problem
from .utils.precision import check_device, parse_autocast, parse_dtype
from .utils.weights import WeightsError, load_state_dict, mismatches

# Keys of `train` and `val` read by basicsr 1.4.2 (train.py, SRModel, BaseModel) and by AdaFormerModel.
MODEL_KEYS = {
    'train': ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt',
              'uncertainty_opt', 'estimator_lr_mult', 'estimator_only', 'autocast'),
    'val': ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'save_halting_maps', 'dtype'),
}
NEAR_MISS = 0.8  # difflib ratio above which an unknown key is taken for a misspelling of a known one
SUGGEST = 0.7  # difflib ratio above which a known name is suggested (EDSR's res_scale -> 'upscale' is 0.625)
PAIR_CHECK_THREADS = 8
MAX_PAIRS_NAMED = 3  # per data set; the others are counted


class OptionError(ValueError):
    """The option dict has problems; ``problems`` lists them, one message each."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__('\n'.join(problems))
        self.problems = problems


def registered(registry: Any, name: Any) -> bool:
    """``name`` is in ``registry`` as BasicSR's ``Registry.get`` finds it: also as ``<name>_basicsr`` (the suffix
    BasicSR gives some of its own entries, e.g. ``RealESRGANDataset``)."""
    return isinstance(name, str) and (name in registry or f'{name}_basicsr' in registry)


def is_number(value: Any, minimum: float) -> bool:
    """``value`` is an int or float of at least ``minimum`` (not a bool, nor a quoted number)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= minimum


def is_integer(value: Any, minimum: int) -> bool:
    """``value`` is an int of at least ``minimum`` (not a bool, which Python counts as an int: YAML's ``true``)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def exit_with_errors(source: str, problems: List[str]) -> NoReturn:
    """Print ``problems`` as ``basicsr: error: ...`` (no traceback) and exit with status 2."""
    if len(problems) == 1:
        print(f'basicsr: error: {source}: {problems[0]}', file=sys.stderr)
    else:
        print(f'basicsr: error: {source} has {len(problems)} problems:', file=sys.stderr)
        print('\n'.join(f'  {p}' for p in problems), file=sys.stderr)
    sys.exit(2)


def checked(parse_options: Callable[..., Tuple[Dict, Any]]) -> Callable[..., Tuple[Dict, Any]]:
    """BasicSR's ``parse_options`` followed by :func:`check_options`; problems end the program with a message."""

    @functools.wraps(parse_options)
    def parse_and_check(*args: Any, **kwargs: Any) -> Tuple[Dict, Any]:
        try:
            opt, parsed = parse_options(*args, **kwargs)
        except FileNotFoundError as err:
            exit_with_errors(str(err.filename), ['the option file does not exist'])
        except yaml.YAMLError as err:
            exit_with_errors(_option_file(), [f'not valid YAML: {err}'])
        except KeyError as err:  # parse_options indexes the options every file must have, and --force_yml's keys
            exit_with_errors(_option_file(), [_missing_key(err.args[0])])
        except ValueError as err:
            bad = [entry for entry in _force_yml_entries() if entry.count('=') != 1]
            if not bad:
                raise
            exit_with_errors(_option_file(), [f'--force_yml {bad[0]}: write KEY:SUBKEY=VALUE (the value without '
                                              f"'='), e.g. train:total_iter=1000 ({err})"])
        except (AttributeError, TypeError) as err:  # e.g. "datasets: [...]": parse_options walks them as mappings
            exit_with_errors(_option_file(), [f'the options are not laid out as BasicSR expects ({err}); e.g. '
                                              '"datasets" is a mapping of data sets, each a mapping of options'])
        try:
            warnings = check_options(opt)
        except OptionError as err:
            exit_with_errors(parsed.opt, err.problems)
        for warning in warnings:
            print(f'basicsr: warning: {parsed.opt}: {warning}', file=sys.stderr)
        return opt, parsed

    return parse_and_check


def _force_yml_entries() -> List[str]:
    """The ``--force_yml`` entries of the command line (each ``KEY:SUBKEY=VALUE``), read as BasicSR's argparse reads
    them (abbreviations, ``--force_yml=...``, the last of repeated ones)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--force_yml', nargs='+', default=[])
    return parser.parse_known_args(sys.argv[1:])[0].force_yml


def _missing_key(key: str) -> str:
    """Why ``parse_options`` found no ``key``: a --force_yml key the file lacks, torchrun's environment, or an option
    every file needs."""
    for entry in _force_yml_entries():
        if key in entry.split('=')[0].split(':')[:-1]:  # BasicSR sets a missing last key, but no missing block
            return (f'--force_yml {entry}: the option file has no block {key!r}, and --force_yml cannot create one; '
                    'add it to (a copy of) the file')
    if key in ('RANK', 'SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):  # what BasicSR's launchers read
        return (f'the environment variable {key} is not set: --launcher pytorch runs under torchrun (e.g. torchrun '
                '--nproc_per_node=2 -m adaformer_arch.train -opt FILE --launcher pytorch), --launcher slurm under srun')
    return f'the required option {key!r} is missing'


def _option_file() -> str:
    argv = sys.argv
    return argv[argv.index('-opt') + 1] if '-opt' in argv[:-1] else 'the option file'


def closest(name: str, candidates: Iterable[str]) -> str:
    """'; did you mean X?' for the closest candidate, or ''."""
    match = difflib.get_close_matches(name, list(candidates), n=1, cutoff=SUGGEST)
    return f'; did you mean {match[0]!r}?' if match else ''


def check_options(opt: Dict) -> List[str]:
    """Check a dict returned by BasicSR's ``parse_options``. Returns warnings; raises :class:`OptionError`."""
    problems: List[str] = []
    warnings: List[str] = []
    for key, cfg in opt.items():
        if key.startswith('network_') and isinstance(cfg, dict):
            problems += _check_constructor(key, cfg, ARCH_REGISTRY, 'network')
        elif key.startswith('network_'):
            problems.append(f'{key}: expected a block like "{key}: {{type: AdaFormer, upscale: 4}}", got {cfg!r}')
    for key, cfg in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(cfg, dict) and 'type' in cfg:
            problems += _check_constructor(f'train.{key}', cfg, LOSS_REGISTRY, 'loss')
    if opt.get('model_type') == 'AdaFormerModel':
        for section, known in MODEL_KEYS.items():
            for key in opt.get(section) or {}:
                if key in known:
                    continue
                if difflib.get_close_matches(key, known, n=1, cutoff=NEAR_MISS):
                    problems.append(f'{section}.{key}: AdaFormerModel has no such option{closest(key, known)} '
                                    'Fix the spelling.')
                else:
                    warnings.append(f'{section}.{key} is not read by AdaFormerModel and has no effect '
                                    f'(it reads {", ".join(known)}).')
    problems += _check_scale(opt) + _check_unused_estimator(opt) + _check_device(opt) + _check_output_folder(opt)
    if opt.get('model_type') == 'AdaFormerModel':
        problems += _check_tile(opt) + _check_precision(opt)
    else:
        problems += _check_model_only_options(opt)
    if opt.get('is_train', True):
        problems += _check_training(opt)
    problems += _check_metrics(opt)
    if not problems and isinstance(opt.get('network_g'), dict):  # names and types fit: build it
        network, build_problems = _build_network_g(opt['network_g'])
        problems += build_problems or _check_pretrained(opt, network)
    if not opt.get('is_train', True) and (opt.get('val') or {}).get('save_img') and 'suffix' not in opt['val']:
        problems.append('val.suffix is missing: with val.save_img BasicSR needs it; add "suffix: ~" to val '
                        '(or a text appended to the image names).')
    pair_counts: Dict[str, int] = {}  # phase -> HR/LR pairs listed by _check_dataset
    for phase, dataset in (opt.get('datasets') or {}).items():
        dataset_problems, pairs = _check_dataset(f'datasets.{phase}', dataset, opt.get('scale'),
                                                 opt.get('is_train', True))
        problems += dataset_problems
        if pairs is not None:
            pair_counts[phase] = pairs
    if not problems and opt.get('is_train', True):
        batch_problems, batch_warnings = _check_batches(opt, pair_counts)
        problems += batch_problems
        warnings += batch_warnings
    if problems:
        raise OptionError(problems)
    return warnings


def _check_constructor(where: str, cfg: Dict, registry: Any, kind: str) -> List[str]:
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


def _has_type(value: Any, kind: type) -> bool:
    """``value`` is a ``kind`` (one of SIMPLE_TYPES) as YAML gives it: a float also takes an int; a bool is neither."""
    if kind is float:
        return is_number(value, -math.inf)
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


def _unquote_hint(value: Any, kind: Any) -> str:
    """' (remove the quotes)' where a quoted YAML value would have the right type without them ('false', '64')."""
    if not isinstance(value, str):
        return ''
    try:
        unquoted = yaml.safe_load(value)
    except yaml.YAMLError:
        return ''
    return ' (remove the quotes)' if _has_type(unquoted, kind) and not isinstance(unquoted, str) else ''


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
    """``path.pretrain_network_g`` exists, loads as plain weights and, with ``strict_load_g`` (BasicSR's default),
    fits ``network`` (built from ``network_g``)."""
    path_opt = opt.get('path') or {}
    weights = path_opt.get('pretrain_network_g')
    if not weights:
        return []
    if osp.isdir(weights):
        return [f'path.pretrain_network_g: {weights} is a folder; give the weights file in it (a .pth).']
    if not osp.isfile(weights):
        return [f'path.pretrain_network_g: {weights} does not exist (relative paths start from the working directory '
                f'{os.getcwd()}). Fix the path, or set it to ~ to start from random weights.']
    try:
        state = load_state_dict(weights)
    except WeightsError as err:
        return [f'path.pretrain_network_g: {err}']
    if not path_opt.get('strict_load_g', True):
        return []
    lines = mismatches(network, state)
    if not lines:
        return []
    return [f'path.pretrain_network_g: {weights} does not fit network_g (strict_load_g is true):\n    '
            + '\n    '.join(lines)]


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


def _check_unused_estimator(opt: Dict) -> List[str]:
    """Distributed training of AdaFormer without L_USL: the confidence estimator runs but gets no gradient (only
    L_USL trains it), and DDP without ``find_unused_parameters`` stops at the second iteration."""
    network = opt.get('network_g')
    if (not opt.get('is_train', True) or not opt.get('dist') or opt.get('find_unused_parameters')
            or not isinstance(network, dict) or network.get('type') != 'AdaFormer'):
        return []
    if opt.get('model_type') == 'AdaFormerModel' and (opt.get('train') or {}).get('uncertainty_opt'):
        return []
    return ['network_g AdaFormer is trained distributed without its uncertainty loss: its confidence estimator then '
            'gets no gradient, and DDP stops at the second iteration. Add train.uncertainty_opt (model_type: '
            'AdaFormerModel) to train the estimator, or "find_unused_parameters: true" at the top level of the '
            'option file.']


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


# options only AdaFormerModel reads; BasicSR's models (SRModel, ...) ignore them without a word
ADAFORMER_MODEL_OPTIONS = (('tile',), ('val', 'dtype'), ('val', 'save_halting_maps'), ('train', 'uncertainty_opt'),
                           ('train', 'estimator_lr_mult'), ('train', 'estimator_only'), ('train', 'autocast'))
SHORTFALL_WARNED = 0.01  # share of total_iter that a run may end short of without a warning
SCHEDULERS = ('MultiStepLR', 'MultiStepRestartLR', 'CosineAnnealingRestartLR')  # what basicsr 1.4.2 builds
OPTIMIZERS = ('Adam',)  # BaseModel.get_optimizer of basicsr 1.4.2 builds Adam only
# scheduler -> (its list with one restart weight per entry, the list's default (None: required), least entry)
RESTART_LISTS = {'CosineAnnealingRestartLR': ('periods', None, 1), 'MultiStepRestartLR': ('restarts', [0], 0)}


def _check_model_only_options(opt: Dict) -> List[str]:
    """Options of AdaFormerModel given to another ``model_type``, which would silently ignore them."""
    problems = []
    for keys in ADAFORMER_MODEL_OPTIONS:
        block = opt
        for key in keys[:-1]:
            block = block.get(key) if isinstance(block.get(key), dict) else {}
        if keys[-1] in block:
            name = '.'.join(keys)
            problems.append(f'{name} is read by AdaFormerModel only; model_type {opt.get("model_type")} would '
                            f'ignore it. Set "model_type: AdaFormerModel" or remove {name}.')
    return problems


def _check_output_folder(opt: Dict) -> List[str]:
    """The folder BasicSR will create for the run (``experiments/<name>`` or ``results/<name>``) can be created."""
    key = 'experiments_root' if opt.get('is_train', True) else 'results_root'
    folder = (opt.get('path') or {}).get(key)
    problem = folder_problem(folder) if isinstance(folder, str) else ''
    return [f'the output folder {folder} cannot be created ({problem}); run from another working directory or '
            'rename the file in the way'] if problem else []


def _check_restarts(scheduler: Dict, total_iter: Any) -> List[str]:
    """The lists of BasicSR's restart schedulers, which it reads only after the first checkpoints are written:
    ``periods`` (CosineAnnealingRestartLR) and ``restarts`` (MultiStepRestartLR) must have one ``restart_weights``
    entry each, and the cosine periods must cover ``total_iter`` (past their sum the learning rate is undefined:
    a TypeError mid-training)."""
    kind = scheduler.get('type')
    if kind not in RESTART_LISTS:
        return []
    key, default, minimum = RESTART_LISTS[kind]
    values = scheduler.get(key, default)
    if values is None:
        return [f'train.scheduler.periods: missing; {kind} needs the list of its cycle lengths in iterations']
    if not isinstance(values, (list, tuple)) or not all(is_integer(v, minimum) for v in values):
        return [f'train.scheduler.{key}: must be a list of integers{" >= 1" if minimum else ""}, got {values!r}']
    weights = scheduler.get('restart_weights')
    if weights is not None and not isinstance(weights, (list, tuple)):
        return [f'train.scheduler.restart_weights: must be a list, got {weights!r}']
    if (1 if weights is None else len(weights)) != len(values):
        given = "none given (BasicSR's default: one weight, [1])" if weights is None else f'got {weights!r}'
        return [f'train.scheduler.restart_weights: {kind} needs one weight per entry of {key} ({len(values)}); '
                f'{given}']
    if key == 'periods' and is_number(total_iter, 1) and sum(values) < int(total_iter):
        return [f'train.scheduler.periods: they add up to {sum(values)}, fewer than train.total_iter '
                f'{int(total_iter)}: past their sum {kind} has no learning rate (BasicSR stops with a TypeError '
                'there); lengthen the periods or lower total_iter']
    return []


def _check_device(opt: Dict) -> List[str]:
    """A GPU count on a machine without CUDA (``num_gpu: auto`` gives 0 there), and CPU processes of a distributed
    run in an NCCL process group, which carries CUDA tensors only."""
    num_gpu = opt.get('num_gpu', 0)
    if is_integer(num_gpu, 1) and not torch.cuda.is_available():
        return [f'num_gpu is {num_gpu} but PyTorch finds no CUDA GPU on this machine: set "num_gpu: 0" (CPU) or '
                '"num_gpu: auto" (the GPUs there are).']
    if opt.get('dist') and num_gpu == 0 and _process_group_backend() == 'nccl':
        return ['num_gpu is 0 (the networks stay on the CPU) but the distributed run uses NCCL, which carries CUDA '
                'tensors only: BasicSR starts NCCL for --launcher pytorch whenever CUDA is there. Hide the GPUs '
                '(CUDA_VISIBLE_DEVICES= torchrun ...) to run CPU processes over gloo, or set "num_gpu: auto".']
    return []


def _process_group_backend() -> str:
    """The backend of the default process group (``''`` when none is initialised)."""
    import torch.distributed as dist

    return str(dist.get_backend()) if dist.is_available() and dist.is_initialized() else ''


def _check_training(opt: Dict) -> List[str]:
    """The ``train`` block and the training data set's batch options, which BasicSR would only trip over after the
    experiment folder exists (a rerun without ``--auto_resume`` moves the previous one aside first)."""
    train = opt.get('train') or {}
    problems = []
    optim = train.get('optim_g')
    if isinstance(optim, dict):
        if optim.get('type') not in OPTIMIZERS:
            problems.append(f'train.optim_g.type: basicsr 1.4.2 builds only {", ".join(OPTIMIZERS)}, got '
                            f'{optim.get("type")!r}')
        if not is_number(optim.get('lr'), 0):
            problems.append(f'train.optim_g.lr: must be a number >= 0, got {optim.get("lr")!r}'
                            f'{_unquote_hint(optim.get("lr"), float)}')
    scheduler = train.get('scheduler')
    if isinstance(scheduler, dict) and scheduler.get('type') not in SCHEDULERS:
        problems.append(f'train.scheduler.type: basicsr 1.4.2 has {", ".join(SCHEDULERS)}, got '
                        f'{scheduler.get("type")!r}{closest(str(scheduler.get("type")), SCHEDULERS)}')
    if 'total_iter' in train and not is_number(train['total_iter'], 1):  # BasicSR takes int() of it
        problems.append(f'train.total_iter: must be a number >= 1, got {train["total_iter"]!r}')
    elif isinstance(scheduler, dict):
        problems += _check_restarts(scheduler, train.get('total_iter'))
    if opt.get('model_type') == 'AdaFormerModel':
        if train.get('estimator_only') is True and not train.get('uncertainty_opt'):
            problems.append('train.estimator_only trains the confidence estimator with L_USL: add '
                            'train.uncertainty_opt')
        mult = train.get('estimator_lr_mult', 1)
        if not is_number(mult, 0) or mult == 0:
            problems.append(f'train.estimator_lr_mult: must be a number > 0, got {mult!r}')
    scale = opt.get('scale')
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not phase.startswith('train') or not isinstance(dataset, dict):
            continue
        for key, minimum in (('batch_size_per_gpu', 1), ('num_worker_per_gpu', 0)):
            if key in dataset and not is_integer(dataset[key], minimum):
                problems.append(f'datasets.{phase}.{key}: must be an integer >= {minimum}, got {dataset[key]!r}')
        gt_size = dataset.get('gt_size')
        if gt_size is not None and (not is_integer(gt_size, 1) or (is_integer(scale, 1) and gt_size % scale)):
            hint = f' (e.g. {gt_size // scale * scale})' if is_integer(gt_size, 1) and is_integer(scale, 1) else ''
            problems.append(f'datasets.{phase}.gt_size: the HR patch must be a positive multiple of scale {scale} '
                            f'(its LR patch is gt_size / scale pixels), got {gt_size!r}{hint}')
    return problems


def _check_metrics(opt: Dict) -> List[str]:
    """``val.metrics``: each a block whose ``type`` is a metric BasicSR has (else it fails after the first image)."""
    metrics = (opt.get('val') or {}).get('metrics') or {}
    if not isinstance(metrics, dict):
        return [f'val.metrics: expected a block like "metrics: {{psnr: {{type: calculate_psnr, crop_border: 4}}}}", '
                f'got {metrics!r}']
    problems = []
    for name, cfg in metrics.items():
        kind = cfg.get('type') if isinstance(cfg, dict) else None
        if not registered(METRIC_REGISTRY, kind):
            problems.append(f'val.metrics.{name}.type: no metric named {kind!r}'
                            f'{closest(str(kind), METRIC_REGISTRY.keys())}')
    return problems


def _check_scale(opt: Dict) -> List[str]:
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


def _check_dataset(where: str, dataset: Any, scale: Optional[int],
                   is_train: bool = True) -> Tuple[List[str], Optional[int]]:
    """A data set block: a registered ``type``, its folders and files exist, and for ``PairedImageDataset`` the
    HR/LR pairs fit the scale (sizes from the headers). -> (problems, the number of pairs where they were listed)."""
    if not isinstance(dataset, dict):
        return [f'{where}: expected a block of data set options (type, dataroot_gt, ...), got {dataset!r}'], None
    if not registered(DATASET_REGISTRY, dataset.get('type')):
        kind = dataset.get('type')
        return [f'{where}.type: no data set named {kind!r}{closest(str(kind), DATASET_REGISTRY.keys())}'], None
    if dataset['type'] == 'PairedImageDataset':
        missing = [key for key in ('dataroot_gt', 'dataroot_lq') if not dataset.get(key)]
        if missing:
            return [f'{where}: PairedImageDataset needs {" and ".join(missing)} (the HR and LR folders); '
                    'add them'], None
        tmpl = dataset.get('filename_tmpl', '{}')
        if not _formats_one_name(tmpl):
            return [f"{where}.filename_tmpl: must be a string with one '{{}}' for the HR image's name (e.g. '{{}}' "
                    f"or '{{}}x4'), got {tmpl!r}"], None
    problems = []
    for key, value in dataset.items():
        if (key.startswith('dataroot') or key == 'meta_info_file') and value is not None and not osp.exists(value):
            problems.append(f'{where}.{key}: {value} does not exist (relative paths start from the working '
                            f'directory {os.getcwd()}). Fix the path or prepare the data (docs/datasets.md).')
    if problems or dataset.get('type') != 'PairedImageDataset' or not isinstance(scale, int):
        return problems, None
    try:
        pairs = _pair_sizes(dataset)
    except (AssertionError, ValueError, OSError) as err:
        try:
            detail = _unpaired(dataset)
        except (OSError, KeyError, IndexError, ValueError):  # a folder or template BasicSR's message names better
            detail = ''
        return [f'{where}: the HR/LR pairs cannot be listed: {detail or err}'], None
    gt_size = dataset.get('gt_size') if dataset.get('phase') == 'train' else None
    bad, unreadable, advice = [], [], set()
    for gt_path, lq_path, gt, lq in pairs:
        if isinstance(gt, str) or isinstance(lq, str):  # the header does not read: the reason
            unreadable.append(gt if isinstance(gt, str) else lq)
            continue
        problem, check = _pair_problem(gt, lq, scale, train=dataset.get('phase') == 'train', gt_size=gt_size)
        if problem:
            bad.append(f'{gt_path} is {gt[1]}x{gt[0]} (HxW) and its LR {lq_path} is {lq[1]}x{lq[0]}: {problem}')
            advice.add(check)
    if bad:
        more = f'; and {len(bad) - MAX_PAIRS_NAMED} more' if len(bad) > MAX_PAIRS_NAMED else ''
        what = f'scale {scale}' + (f' and gt_size {gt_size}' if PATCH_ADVICE in advice else '')
        problems.append(f'{where}: {len(bad)} of {len(pairs)} HR/LR pairs do not fit {what}: '
                        f'{"; ".join(bad[:MAX_PAIRS_NAMED])}{more}. {" ".join(sorted(advice))}')
    if unreadable and is_train:  # `basicsr test` skips these pairs (adaformer_arch.data.test_pairs)
        more = f'; and {len(unreadable) - MAX_PAIRS_NAMED} more' if len(unreadable) > MAX_PAIRS_NAMED else ''
        problems.append(f'{where}: {len(unreadable)} of {len(pairs)} images cannot be read: '
                        f'{"; ".join(unreadable[:MAX_PAIRS_NAMED])}{more}. Re-save or remove them.')
    return problems, len(pairs)


def _check_batches(opt: Dict, pair_counts: Dict[str, int]) -> Tuple[List[str], List[str]]:
    """A ``PairedImageDataset`` training set (``pair_counts``: its HR/LR pairs by phase, as ``_check_dataset``
    listed them) against its batch: BasicSR counts ``ceil(samples / (batch x world_size))`` iterations per epoch, but
    its loader drops the last, incomplete batch. With fewer samples than one batch nothing is trained (and the run
    ends "successfully"); otherwise training can end short of ``total_iter`` (warned when by more than
    ``SHORTFALL_WARNED`` of it). -> (problems, warnings)."""
    problems, warnings = [], []
    world = opt.get('world_size', 1)
    # DataParallel (several GPUs, no launcher): one loader batch is batch_size_per_gpu x num_gpu, counted as one
    num_gpu = opt.get('num_gpu', 0)
    gpus_per_batch = num_gpu if not opt.get('dist') and is_integer(num_gpu, 2) else 1
    total_iter = (opt.get('train') or {}).get('total_iter')
    for phase, dataset in (opt.get('datasets') or {}).items():
        if not phase.startswith('train') or phase not in pair_counts:
            continue
        batch, ratio = dataset.get('batch_size_per_gpu'), dataset.get('dataset_enlarge_ratio', 1)
        if not is_integer(batch, 1) or not is_integer(ratio, 1) or not is_integer(world, 1):
            continue
        samples = pair_counts[phase] * ratio
        loader_batch = batch * gpus_per_batch
        full_batches = math.ceil(samples / world) // loader_batch  # per process and epoch (EnlargedSampler, drop_last)
        counted = math.ceil(samples / (batch * world))  # BasicSR's iterations per epoch
        where = f'datasets.{phase}'
        if full_batches == 0:
            problems.append(f'{where}: {samples} samples (image pairs x dataset_enlarge_ratio {ratio}) do not fill '
                            f'one batch of {loader_batch} per process (batch_size_per_gpu {batch}): BasicSR would end '
                            'without training. Add images, raise dataset_enlarge_ratio or lower batch_size_per_gpu.')
        elif is_number(total_iter, 1) and full_batches < counted:
            reached = (math.ceil(int(total_iter) / counted) + 1) * full_batches  # epochs 0..total_epochs
            if reached < int(total_iter) * (1 - SHORTFALL_WARNED):
                warnings.append(f'{where}: with {samples} samples and batches of {loader_batch} x {world} processes, '
                                f'BasicSR counts {counted} iterations per epoch but its loader gives {full_batches}: '
                                f'a run from iteration 0 ends at iteration {reached}, not total_iter '
                                f'{int(total_iter)}.')
    return problems, warnings


PAIR_ADVICE = 'Check dataroot_gt, dataroot_lq and scale.'
PATCH_ADVICE = 'Lower gt_size, or train on larger images.'


def _pair_problem(gt: Tuple[int, int], lq: Tuple[int, int], scale: int, train: bool,
                  gt_size: Optional[int]) -> Tuple[str, str]:
    """What is wrong with a pair of sizes (width, height) and which options to check, or ('', '')."""
    if train and tuple(gt) != tuple(q * scale for q in lq):
        return f'for training HR must be exactly {scale} x LR', PAIR_ADVICE
    if not train and not hr_fits_lr(gt, lq, scale):
        return f'HR must be {scale} x LR (plus less than {scale} px of border)', PAIR_ADVICE
    if gt_size and min(lq) < gt_size // scale:
        return (f'the LR image is smaller than the training patch (gt_size / scale = {gt_size // scale} px)',
                PATCH_ADVICE)
    return '', ''


def _formats_one_name(tmpl: Any) -> bool:
    """``filename_tmpl`` works as BasicSR uses it: ``tmpl.format(stem)``."""
    try:
        return isinstance(tmpl, str) and tmpl.format('a') != tmpl.format('b')
    except (IndexError, KeyError, ValueError):
        return False


def _pairs_from_folders(dataset: Dict) -> bool:
    """PairedImageDataset pairs the files of its two folders by name (no LMDB, no ``meta_info_file``)."""
    return dataset.get('io_backend', {}).get('type') != 'lmdb' and dataset.get('meta_info_file') is None


def _unpaired(dataset: Dict) -> str:
    """For folders of images: which HR images have no LR image under the name ``filename_tmpl`` gives them, and
    which LR images no HR image names; '' when every image has its partner (or the pairs come from elsewhere)."""
    if not _pairs_from_folders(dataset):
        return ''
    tmpl = dataset.get('filename_tmpl', '{}')
    gt_names = sorted(scandir(dataset['dataroot_gt']))
    lq_names = set(scandir(dataset['dataroot_lq']))
    expected = {f'{tmpl.format(osp.splitext(name)[0])}{osp.splitext(name)[1]}': name for name in gt_names}
    no_lq = [name if lq == name else f'{name} (expects {lq})' for lq, name in expected.items() if lq not in lq_names]
    no_gt = sorted(lq_names - set(expected))
    found = []
    for names, what in ((no_lq, f'with no LR image in {dataset["dataroot_lq"]}'),
                        (no_gt, f'with no HR image in {dataset["dataroot_gt"]}')):
        if names:
            more = f' and {len(names) - MAX_PAIRS_NAMED} more' if len(names) > MAX_PAIRS_NAMED else ''
            kind = ('HR' if names is no_lq else 'LR') + (' image' if len(names) == 1 else ' images')
            found.append(f'{len(names)} {kind} {what}: {", ".join(names[:MAX_PAIRS_NAMED])}{more}')
    return '; '.join(found)


def _pair_paths(dataset: Dict) -> List[Dict[str, str]]:
    """The ``{'lq_path', 'gt_path'}`` pairs PairedImageDataset would load (LMDB keys for an LMDB backend)."""
    folders, keys = [dataset['dataroot_lq'], dataset['dataroot_gt']], ['lq', 'gt']
    if dataset.get('io_backend', {}).get('type') == 'lmdb':
        return paired_paths_from_lmdb(folders, keys)
    tmpl = dataset.get('filename_tmpl', '{}')
    if dataset.get('meta_info_file') is not None:
        return paired_paths_from_meta_info_file(folders, keys, dataset['meta_info_file'], tmpl)
    return paired_paths_from_folder(folders, keys, tmpl)


def _pair_sizes(dataset: Dict) -> List[Tuple[str, str, Any, Any]]:
    """(gt name, lq name, gt (w, h), lq (w, h)) of every pair that PairedImageDataset would load; a size is a message
    instead where the header of that file cannot be read."""
    paths = _pair_paths(dataset)
    if dataset.get('io_backend', {}).get('type') == 'lmdb':
        lq_sizes, gt_sizes = (_lmdb_sizes(dataset[key]) for key in ('dataroot_lq', 'dataroot_gt'))
        return [(p['gt_path'], p['lq_path'], gt_sizes[p['gt_path']], lq_sizes[p['lq_path']]) for p in paths]

    def size(path: str) -> Any:
        try:
            with Image.open(path) as img:  # reads the header only
                return img.size
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            return f'{path} ({err})'

    def sizes(p: Dict) -> Tuple[str, str, Any, Any]:
        return p['gt_path'], p['lq_path'], size(p['gt_path']), size(p['lq_path'])

    with ThreadPoolExecutor(PAIR_CHECK_THREADS) as pool:
        return list(pool.map(sizes, paths))


def _lmdb_sizes(folder: str) -> Dict[str, Tuple[int, int]]:
    """LMDB key -> (w, h), from ``meta_info.txt`` lines such as ``baboon.png (120,125,3) 1``."""
    sizes = {}
    with open(osp.join(folder, 'meta_info.txt')) as f:
        for line in f:
            match = re.match(r'(\S+?)\.\S+ \((\d+),(\d+)', line)
            if match:
                sizes[match.group(1)] = (int(match.group(3)), int(match.group(2)))
    return sizes
