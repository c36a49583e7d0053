"""Checks of a parsed BasicSR option dict, run by `basicsr train` and `basicsr test` before anything is built.

BasicSR reports most option mistakes late (after the data sets are loaded, or at the first validation) and as a
traceback, or not at all (a misspelled optional key is silently ignored). :func:`check_options` finds them all at
once: keys of ``train`` and ``val`` that AdaFormerModel does not read (an error for a near miss of one it reads, a
warning otherwise) here, the rest in :mod:`.network`, :mod:`.training` and :mod:`.datasets`. :func:`checked` ends
the program with them as messages, and with those of an option file that does not parse (a ``--force_yml`` entry
for a block the file lacks or without ``=``, ``--launcher pytorch`` outside torchrun).
"""
import argparse
import difflib
import functools
import sys
from typing import Any, Callable, Dict, List, NoReturn, Tuple

import yaml

from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

from .datasets import _check_batches, _check_dataset
from .network import (_build_network_g, _check_network_for_model, _check_precision, _check_pretrained, _check_tile,
                      _check_unused_estimator, _warn_estimator_only_from_scratch, _warn_untrained_estimator,
                      check_constructor, check_scale)
from .training import (_check_device, _check_metrics, _check_model_only_options, _check_model_setup,
                       _check_output_folder, _check_training)
from .values import NEAR_MISS, closest, misspellings

__all__ = ['OptionError', 'check_options', 'checked', 'exit_with_errors']

# Keys of `train` and `val` read by basicsr 1.4.2 (train.py, SRModel, BaseModel) and by AdaFormerModel.
MODEL_KEYS = {
    'train': ('ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'pixel_opt', 'perceptual_opt',
              'uncertainty_opt', 'estimator_lr_mult', 'estimator_only', 'autocast'),
    'val': ('val_freq', 'save_img', 'suffix', 'metrics', 'pbar', 'save_halting_maps', 'dtype'),
}
# Top-level keys read by basicsr 1.4.2 from an option file (parse_options adds is_train, dist, rank, world_size,
# auto_resume and root_path; network_* blocks are checked by name).
TOP_KEYS = ('name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
            'logger', 'dist_params', 'find_unused_parameters')


class OptionError(ValueError):
    """The option dict has problems; ``problems`` lists them, one message each."""

    def __init__(self, problems: List[str]) -> None:
        super().__init__('\n'.join(problems))
        self.problems = problems


def problems_message(source: str, problems: List[str]) -> str:
    """``SOURCE: PROBLEM``, or ``SOURCE has N problems:`` with one indented line per problem."""
    if len(problems) == 1:
        return f'{source}: {problems[0]}'
    return f'{source} has {len(problems)} problems:\n' + '\n'.join(f'  {p}' for p in problems)


def exit_with_errors(source: str, problems: List[str]) -> NoReturn:
    """Print ``problems`` as ``basicsr: error: ...`` (no traceback) and exit with status 2."""
    print(f'basicsr: error: {problems_message(source, problems)}', file=sys.stderr)
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
            exit_with_errors(parsed.opt, [_force_yml_hint(p) for p in err.problems])
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


def _force_yml_hint(problem: str) -> str:
    """A problem with a value that ``--force_yml`` set, and whose hint is about YAML (quotes, exponent form): the
    hint made right for ``--force_yml``, which passes a value on as text unless BasicSR converts it (``~``/``none``,
    ``true``/``false``, digits, one-dot decimals, ``!!float VALUE``; ``1.0e-4`` stays text)."""
    if not problem.endswith(')') or not ('(remove the quotes' in problem or 'exponent form' in problem):
        return problem
    for entry in _force_yml_entries():
        key, _, value = entry.partition('=')
        if problem.startswith(key.replace(':', '.') + ':'):
            try:
                better = f'{key}={float(value)!r}'
            except ValueError:
                better = f'{key}={value.lower()}' if value.lower() in ('true', 'false') else f'{key}=!!float {value}'
            return (f"{problem[:problem.rindex(' (')]} (--force_yml {entry}: BasicSR passes this value on as text; "
                    f'write --force_yml {better})')
    return problem


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


def check_options(opt: Dict) -> List[str]:
    """Check a dict returned by BasicSR's ``parse_options``. Returns warnings; raises :class:`OptionError`."""
    problems: List[str] = []
    warnings: List[str] = []
    meant = misspellings([key for key in opt if not key.startswith('network_')], TOP_KEYS, opt)
    problems += [f'{key}: BasicSR has no such option; did you mean {known!r}? Fix the spelling.'
                 for key, known in meant.items()]
    is_test = not opt.get('is_train', True)
    # basicsr test would index val (and val.save_img) only after it has archived the previous results
    if is_test and 'val' not in opt and 'val' not in meant.values():
        problems.append('val is missing: basicsr test needs a val block (save_img, metrics); add it')
    elif is_test and isinstance(opt.get('val'), dict) and 'save_img' not in opt['val']:
        problems.append('val.save_img is missing: basicsr test needs it (true writes the SR images); add it')
    for key, cfg in opt.items():
        if key.startswith('network_') and isinstance(cfg, dict):
            problems += check_constructor(key, cfg, ARCH_REGISTRY, 'network')
        elif key.startswith('network_'):
            problems.append(f'{key}: expected a block like "{key}: {{type: AdaFormer, upscale: 4}}", got {cfg!r}')
    for key, cfg in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(cfg, dict) and 'type' in cfg:
            problems += check_constructor(f'train.{key}', cfg, LOSS_REGISTRY, 'loss')
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
    problems += _check_model_setup(opt) + check_scale(opt) + _check_unused_estimator(opt) + _check_device(opt)
    problems += _check_output_folder(opt)
    if opt.get('model_type') == 'AdaFormerModel':
        problems += _check_tile(opt) + _check_precision(opt)
    else:
        problems += _check_model_only_options(opt)
    if opt.get('is_train', True):
        problems += _check_training(opt)
    problems += _check_metrics(opt)
    if not problems and isinstance(opt.get('network_g'), dict):  # names and types fit: build it
        network, build_problems = _build_network_g(opt['network_g'])
        problems += build_problems or _check_pretrained(opt, network) + _check_network_for_model(opt, network)
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
    warnings += _warn_untrained_estimator(opt) + _warn_estimator_only_from_scratch(opt)
    if not problems and opt.get('is_train', True):
        batch_problems, batch_warnings = _check_batches(opt, pair_counts)
        problems += batch_problems
        warnings += batch_warnings
    if problems:
        raise OptionError(problems)
    return warnings
