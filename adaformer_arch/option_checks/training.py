"""Checks of how the run is set up: the ``train`` block (an optimiser or scheduler basicsr 1.4.2 does not build,
restart lists that do not match, a learning rate, ``total_iter``, batch options or ``gt_size`` of the wrong kind,
AdaFormerModel's estimator options), options only AdaFormerModel reads under another ``model_type``, ``num_gpu``
against CUDA and the process group, the output folder, and the ``type`` of each of ``val.metrics``."""
import inspect
import re
from typing import Any, Dict, List

import torch

from basicsr.utils.registry import METRIC_REGISTRY, MODEL_REGISTRY

from ..utils.output_folder import folder_problem
from .values import _unquote_hint, closest, is_integer, is_number, registered

# options only AdaFormerModel reads; BasicSR's models (SRModel, ...) ignore them without a word
ADAFORMER_MODEL_OPTIONS = (('tile',), ('val', 'dtype'), ('val', 'save_halting_maps'), ('train', 'uncertainty_opt'),
                           ('train', 'estimator_lr_mult'), ('train', 'estimator_only'), ('train', 'autocast'))
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


# path keys parse_options sets; the user's keys BasicSR's models read (per network: _g, _d, _g_ema, ...); the parts
# of a key that make BasicSR's make_exp_dirs skip it (it makes a folder of the value of any other key)
PATH_SET_BY_BASICSR = ('experiments_root', 'results_root', 'models', 'training_states', 'log', 'visualization')
PATH_READ = re.compile(r'(pretrain_network|param_key|strict_load)_\w+|resume_state')
PATH_SKIPPED_PARTS = ('pretrain_network', 'strict_load', 'param_key', 'resume')
PATH_USER_KEYS = ('pretrain_network_g', 'param_key_g', 'strict_load_g', 'resume_state')


def _check_model_setup(opt: Dict) -> List[str]:
    """``model_type`` registered, ``network_g`` present, SwinIRModel's ``network_g.window_size`` (it pads test
    inputs to it and fails without it), and the keys of ``path``: BasicSR makes a folder of every value whose key
    it does not read, so a misspelt ``pretrain_network_g`` is no weights (a test with random weights) or a folder
    made of the weights file's name (FileExistsError)."""
    problems = []
    model_type = opt.get('model_type')
    if not registered(MODEL_REGISTRY, model_type):
        problems.append(f'model_type: no model named {model_type!r} is registered'
                        f'{closest(str(model_type), MODEL_REGISTRY.keys())} (AdaFormer trains with AdaFormerModel)')
    if 'network_g' not in opt:
        problems.append(f'network_g is missing{closest("network_g", [k for k in opt if isinstance(k, str)])} (e.g. '
                        '"network_g: {type: AdaFormer, upscale: 4}")')
    elif (model_type == 'SwinIRModel' and isinstance(opt['network_g'], dict)
          and 'window_size' not in opt['network_g']):
        problems.append('network_g.window_size: model_type SwinIRModel reads it (it pads test inputs to a multiple '
                        'of it) and fails without it; add window_size, or use model_type AdaFormerModel, which pads '
                        'for the network')
    path_opt = opt.get('path') or {}
    for key, value in path_opt.items() if isinstance(path_opt, dict) else ():
        key = str(key)
        if key in PATH_SET_BY_BASICSR or PATH_READ.fullmatch(key):
            continue
        folder = '' if any(part in key for part in PATH_SKIPPED_PARTS) else f' and would make a folder {value!r} of it'
        problems.append(f'path.{key}: BasicSR reads no such option{folder}{closest(key, PATH_USER_KEYS)} (path '
                        f'takes {", ".join(PATH_USER_KEYS)}, and the same for other networks than _g)')
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
        if gt_size is None and dataset.get('type') == 'PairedImageDataset':
            problems.append(f'datasets.{phase}.gt_size is missing: PairedImageDataset cuts training patches of gt_size '
                            'HR pixels; add it (scale x the LR patch, e.g. 192 for 48 LR pixels at x4)')
        if gt_size is not None and (not is_integer(gt_size, 1) or (is_integer(scale, 1) and gt_size % scale)):
            hint = f' (e.g. {gt_size // scale * scale})' if is_integer(gt_size, 1) and is_integer(scale, 1) else ''
            problems.append(f'datasets.{phase}.gt_size: the HR patch must be a positive multiple of scale {scale} '
                            f'(its LR patch is gt_size / scale pixels), got {gt_size!r}{hint}')
    return problems


METRIC_DATA = ('img', 'img2')  # what SRModel's validation passes to every metric: the SR and the HR image
METRIC_OWN_KEYS = ('type', 'better')  # read by BasicSR itself (better: whether higher is best)


def _check_metrics(opt: Dict) -> List[str]:
    """``val.metrics``: each a block whose ``type`` is a metric BasicSR has (else it fails after the first image),
    with the arguments the metric takes: BasicSR's metrics swallow unknown ones (``test_y_chanel: true`` would
    measure on RGB without a word) and fail on a missing one only at the first image. A data set without HR images
    (``SingleImageDataset``) cannot be measured by a metric that compares with the HR image."""
    metrics = (opt.get('val') or {}).get('metrics') or {}
    if not isinstance(metrics, dict):
        return [f'val.metrics: expected a block like "metrics: {{psnr: {{type: calculate_psnr, crop_border: 4}}}}", '
                f'got {metrics!r}']
    problems = []
    lr_only = [f'datasets.{phase}' for phase, d in (opt.get('datasets') or {}).items()
               if not phase.startswith('train') and isinstance(d, dict) and d.get('type') == 'SingleImageDataset']
    for name, cfg in metrics.items():
        kind = cfg.get('type') if isinstance(cfg, dict) else None
        if not registered(METRIC_REGISTRY, kind):
            problems.append(f'val.metrics.{name}.type: no metric named {kind!r}'
                            f'{closest(str(kind), METRIC_REGISTRY.keys())}')
            continue
        function = METRIC_REGISTRY.get(kind)
        params = inspect.signature(function).parameters
        swallows = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        accepted = [n for n, p in params.items() if n not in METRIC_DATA and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
        if not swallows or function.__module__.startswith('basicsr.'):  # a user's metric may read its own kwargs
            problems += [f'val.metrics.{name}.{key}: {kind} has no argument {key!r}{closest(key, accepted)} ({kind} '
                         f'takes: {", ".join(accepted)}; BasicSR would pass it on and the metric ignore it)'
                         for key in cfg if key not in METRIC_OWN_KEYS and key not in accepted]
        problems += [f'val.metrics.{name}: {kind} needs the argument {n!r}; add it' for n in accepted
                     if params[n].default is inspect.Parameter.empty and n not in cfg]
        if lr_only and 'img2' in params and params['img2'].default is inspect.Parameter.empty:
            problems.append(f'val.metrics.{name}: {kind} compares with the HR image, which {", ".join(lr_only)} '
                            '(SingleImageDataset, LR only) does not have: remove val.metrics, or give the HR '
                            'images with PairedImageDataset')
    return problems
