"""`basicsr train`: BasicSR's ``train_pipeline`` with AdaFormer registered and a crash-safe, CPU-capable resume.

Usage (as BasicSR's ``basicsr/train.py``)::

    basicsr train -opt options/train_adaformer_x4.yml [--auto_resume] [--debug] [--launcher none|pytorch|slurm]
    python -m adaformer_arch.train -opt ...

Experiments, logs and tensorboard files go under the current working directory.
"""
import os
import sys
from os import path as osp
from typing import Dict, List, Optional

import torch

import adaformer_arch  # noqa: F401  (applies the compat fixes, registers AdaFormer)
from basicsr import train as basicsr_train
from basicsr.utils import check_resume, get_root_logger, scandir

from .utils.allocator import tune_glibc_malloc


def _state_candidates(opt: Dict) -> List[str]:
    """Training states to try, newest first."""
    if opt['auto_resume']:
        folder = osp.join('experiments', opt['name'], 'training_states')
        if not osp.isdir(folder):
            return []
        states = [f for f in scandir(folder, suffix='.state', recursive=False) if f[:-len('.state')].isdigit()]
        return [osp.join(folder, f) for f in sorted(states, key=lambda f: int(f[:-len('.state')]), reverse=True)]
    resume = opt['path'].get('resume_state')
    return [resume] if resume else []


def _warn(message: str) -> None:
    # The root logger has no file handler yet at this point (BasicSR creates it after resuming); print as well.
    print(f'WARNING: {message}', file=sys.stderr, flush=True)
    get_root_logger().warning(message)


def load_resume_state(opt: Dict) -> Optional[Dict]:
    """Replacement for BasicSR's ``load_resume_state``.

    * loads with ``weights_only=True`` (no pickled code runs) onto the CPU; BaseModel moves the optimiser state to
      the parameters' device, so this works on CPU-only machines and on GPUs alike;
    * with ``--auto_resume``, a state that does not load (cut short, corrupt, from another version) or whose network
      checkpoint is missing is skipped with a warning naming it, and the next newest one is used.
    """
    for path in _state_candidates(opt):
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
            model_file = osp.join(osp.dirname(osp.dirname(path)), 'models', f"net_g_{state['iter']}.pth")
            if opt['auto_resume'] and not osp.isfile(model_file):
                raise FileNotFoundError(f'its network checkpoint {model_file} is missing')
        except Exception as err:  # noqa: BLE001  (any unreadable state is skipped, with its reason)
            if not opt['auto_resume']:
                raise RuntimeError(f'path.resume_state {path} cannot be loaded: {err}. Point resume_state to a '
                                   'complete .state file, or use --auto_resume to pick the newest good one.') from err
            _warn(f'skipping training state {path}: {err}')
            continue
        opt['path']['resume_state'] = path
        check_resume(opt, state['iter'])
        return state
    return None


def main(argv: Optional[List[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    tune_glibc_malloc()
    basicsr_train.load_resume_state = load_resume_state
    basicsr_train.train_pipeline(os.getcwd())


if __name__ == '__main__':
    main()
