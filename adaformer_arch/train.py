"""`basicsr train`: BasicSR's ``train_pipeline`` with AdaFormer registered, option checks, a crash-safe and exact
resume, and Ctrl-C checkpoints.

Usage (as BasicSR's ``basicsr/train.py``)::

    basicsr train -opt options/train_adaformer_x4.yml [--auto_resume] [--debug] [--launcher none|pytorch|slurm]
    python -m adaformer_arch.train -opt ...

Experiments, logs and tensorboard files go under the current working directory. The training loop is BasicSR's;
:class:`Training` replaces some of the functions it calls (in the ``basicsr.train`` module of this process only):

* ``parse_options`` is followed by :func:`adaformer_arch.option_checks.check_options`;
* ``load_resume_state`` loads with ``weights_only=True`` onto the CPU and skips states that do not load;
* ``EnlargedSampler`` becomes :class:`ResumableSampler`, which resumes mid-epoch where training stopped;
* ``build_model`` hooks an AdaFormerModel: each training state gets the sampler's resume point, and the first
  Ctrl-C stops training at the end of the current iteration, with a checkpoint (exit status 130).

With ``--launcher pytorch``/``slurm`` every process ends with :func:`adaformer_arch.compat.exit_distributed_rank`
when training ends (a gloo rank could otherwise abort with SIGABRT in interpreter shutdown).

docs/reliability.md says what is guaranteed and how it is tested.
"""
import functools
import glob
import os
import signal
import sys
from os import path as osp
from typing import Dict, List, Optional

import torch

from basicsr import train as basicsr_train
from basicsr.train import init_tb_loggers
from basicsr.models import build_model
from basicsr.utils import check_resume, get_root_logger, scandir
from basicsr.utils.options import parse_options
from basicsr.utils.registry import MODEL_REGISTRY

from .compat import exit_distributed_rank
from .models.adaformer_model import AdaFormerModel
from .option_checks import checked, exit_with_errors
from .option_checks.network import check_resume_network
from .utils.allocator import tune_glibc_malloc
from .utils.exact_resume import RESUME_POINT, ResumableSampler

STATE_KEYS = ('epoch', 'iter', 'optimizers', 'schedulers')
EXIT_INTERRUPTED = 130  # the shell's status for a program ended by SIGINT


class Interrupted(Exception):
    """Training stopped on Ctrl-C after saving a checkpoint; the message says where."""


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


def _short(err: Exception) -> str:
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else ''
    return f'{type(err).__name__}: {first_line[:200]}'


def network_checkpoint(models_folder: str, iteration: int) -> str:
    """The network checkpoint BasicSR saves beside the training state of ``iteration`` (and loads on resume)."""
    return osp.join(models_folder, f'net_g_{iteration}.pth')


def load_training_state(path: str, models_folder: str) -> Dict:
    """Load a training state (and check that its network checkpoint loads) without running pickled code."""
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise ValueError('it does not exist') from None
    except Exception as err:  # noqa: BLE001  (cut short, corrupt, or unsafe: torch says which)
        raise ValueError(f'it does not load ({_short(err)})') from err
    if not isinstance(state, dict) or not all(key in state for key in STATE_KEYS):
        raise ValueError(f'it is not a BasicSR training state (a dict with {", ".join(STATE_KEYS)})')
    model_file = network_checkpoint(models_folder, state['iter'])
    if not osp.isfile(model_file):
        raise ValueError(f'its network checkpoint {model_file} is missing')
    try:
        torch.load(model_file, map_location='cpu', weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f'its network checkpoint {model_file} does not load ({_short(err)})') from err
    return state


class Training:
    """The hooks of one `basicsr train` run into BasicSR's ``train_pipeline``."""

    def __init__(self) -> None:
        self.resume_point: Optional[Dict] = None  # of the training state training resumes from
        self.sampler: Optional[ResumableSampler] = None
        self.stop_requested = False
        self._pid = os.getpid()
        self._notes: List[str] = []  # warnings for the log, which BasicSR creates after load_resume_state
        self._tb_logger = None

    def install(self) -> None:
        basicsr_train.parse_options = checked(parse_options)
        basicsr_train.load_resume_state = self.load_resume_state
        basicsr_train.EnlargedSampler = self.make_sampler
        basicsr_train.build_model = self.build_model
        basicsr_train.init_tb_loggers = self.init_tb_loggers

    def init_tb_loggers(self, opt: Dict):
        """BasicSR's ``init_tb_loggers``, keeping the tensorboard writer to close it on Ctrl-C."""
        self._tb_logger = init_tb_loggers(opt)
        return self._tb_logger

    def load_resume_state(self, opt: Dict) -> Optional[Dict]:
        """Replacement for BasicSR's ``load_resume_state``.

        * loads with ``weights_only=True`` (no pickled code runs) onto the CPU; BaseModel moves the optimiser state
          to the parameters' device, so this works on CPU-only machines and on GPUs alike;
        * with ``--auto_resume``, a state that does not load (cut short, corrupt, unsafe, from another version) or
          whose network checkpoint is missing or does not load is skipped with a warning naming it, and the next
          newest one is used; temporary files of writes cut short by a crash are removed.
        """
        if opt['auto_resume']:
            self._remove_leftover_temporaries(opt)
        skipped = 0
        for path in _state_candidates(opt):
            try:
                state = load_training_state(path, opt['path']['models'])
            except ValueError as err:
                if not opt['auto_resume']:
                    exit_with_errors(f'path.resume_state {path}', [
                        f'cannot resume from it: {err}. Point resume_state to a complete .state file, or use '
                        '--auto_resume to pick the newest good one.'
                    ])
                self._notes.append(f'Skipping training state {path}: {err}.')
                skipped += 1
                continue
            opt['path']['resume_state'] = path
            problems = check_resume_network(opt, network_checkpoint(opt['path']['models'], state['iter']))
            if problems:
                exit_with_errors(f'path.resume_state {path}', problems)
            check_resume(opt, state['iter'])
            self.resume_point = state.get(RESUME_POINT)
            if self.resume_point is None:
                kind = opt.get('model_type')
                saves_one = kind in MODEL_REGISTRY and issubclass(MODEL_REGISTRY.get(kind), AdaFormerModel)
                writer = ('BasicSR or an older basicsr train' if saves_one else
                          f'model_type {kind}: only AdaFormerModel saves one')
                self._notes.append(f'{path} has no resume point (written by {writer}): epoch {state["epoch"]} '
                                   'restarts from its first sample, as in BasicSR.')
            return state
        if skipped:
            self._notes.append('No training state could be loaded: training starts from iteration 0 (BasicSR '
                               'renames the existing experiment folder to *_archived_*).')
        return None

    def _remove_leftover_temporaries(self, opt: Dict) -> None:
        """Temporary files of atomic writes (``.NAME.XXXX.tmp``: checkpoints, training states, validation stats and
        images) that a crash cut short, anywhere in the experiment folder. Rank 0 only: every rank of a distributed
        run resumes, and ranks removing the same files would race (``FileNotFoundError`` for all but one); only rank
        0 writes these files."""
        if opt.get('rank', 0) != 0:
            return
        root = osp.join('experiments', opt['name'])
        for tmp in sorted(glob.glob(osp.join(root, '**', '.*.tmp'), recursive=True)):
            os.remove(tmp)
            self._notes.append(f'Removed {tmp}, a write cut short by a crash.')

    def make_sampler(self, dataset, num_replicas: int, rank: int, ratio: int = 1) -> ResumableSampler:
        """Stands in for ``EnlargedSampler`` (called once BasicSR's logger writes to the log file)."""
        logger = get_root_logger()
        for note in self._notes:
            logger.warning(note)
        self.sampler = ResumableSampler(dataset, num_replicas, rank, ratio)
        point = self.resume_point
        if point is not None and point['epoch_samples'] != self.sampler.num_samples:
            logger.warning(f"The training set has {self.sampler.num_samples} samples per epoch, the checkpoint's "
                           f"had {point['epoch_samples']}: epoch {point['epoch']} restarts from its first sample.")
        elif point is not None:
            self.sampler.resume_from(point)
            logger.info(f"Exact resume: epoch {point['epoch']} continues after its first {point['samples_done']} "
                        'samples, with the random generator states of the checkpoint.')
        return self.sampler

    def build_model(self, opt: Dict):
        """BasicSR's ``build_model``; an AdaFormerModel gets the resume-point and Ctrl-C hooks."""
        model = build_model(opt)
        if not isinstance(model, AdaFormerModel) or self.sampler is None:
            get_root_logger().info('Exact resume and Ctrl-C checkpoints need model_type AdaFormerModel.')
            return model
        model.after_iteration = functools.partial(self._after_iteration, model)
        model.training_state_extras = lambda: {RESUME_POINT: self.sampler.resume_point()}
        if not opt['dist']:  # with DDP every process would have to agree on the iteration to stop at
            signal.signal(signal.SIGINT, self._on_sigint)
        return model

    def _on_sigint(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked DataLoader worker: the main process decides
        if self.stop_requested:
            raise KeyboardInterrupt
        self.stop_requested = True
        print('\nCtrl-C: training stops after this iteration and saves a checkpoint (Ctrl-C again: stop now, '
              'without saving)', file=sys.stderr, flush=True)

    def _after_iteration(self, model: AdaFormerModel, current_iter: int) -> None:
        self.sampler.consumed(model.lq.size(0))
        if not self.stop_requested:
            return
        model.save(self.sampler.epoch, current_iter)
        paths = model.opt['path']
        message = (f'Stopped by Ctrl-C after iteration {current_iter}: saved '
                   f"{osp.join(paths['models'], f'net_g_{current_iter}.pth')} and "
                   f"{osp.join(paths['training_states'], f'{current_iter}.state')}; continue with --auto_resume.")
        get_root_logger().info(message)
        if self._tb_logger is not None:
            self._tb_logger.close()
        raise Interrupted(message)


def main(argv: Optional[List[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0]] + list(argv)
    tune_glibc_malloc()
    Training().install()
    try:
        basicsr_train.train_pipeline(os.getcwd())
    except Interrupted:
        sys.exit(EXIT_INTERRUPTED)
    exit_distributed_rank()


if __name__ == '__main__':
    main()
