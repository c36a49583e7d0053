"""Exact resume: a resumed training run continues with the data and random numbers it would have had.

BasicSR resumes at the start of the checkpoint's epoch: it trains again on the samples of that epoch it had already
seen (in the same order, ``EnlargedSampler`` shuffles with the epoch as seed) with freshly seeded random generators
(other random crops and flips). For an exact continuation each training state also holds a *resume point* (the
epoch, how many of its samples were trained on, and the random generator states of the process) and
:class:`ResumableSampler` skips those samples and restores the generators right before the next sample is loaded.
docs/reliability.md says which runs this makes identical to an uninterrupted run.
"""
import itertools
import random
from typing import Dict, Iterator, Optional

import numpy as np
import torch

from basicsr.data.data_sampler import EnlargedSampler

#: key of the resume point in a training state
RESUME_POINT = 'resume_point'


def capture_rng() -> Dict:
    """Random generator states (Python, NumPy, torch CPU and, once the run has started CUDA, CUDA), as types that
    ``torch.load(weights_only=True)`` accepts. A CPU run on a GPU machine does not start CUDA for this (reading the
    CUDA states would create a context on every GPU)."""
    np_state = np.random.get_state(legacy=False)
    state = {
        'python': random.getstate(),
        'numpy': {'key': torch.from_numpy(np_state['state']['key'].astype(np.int64)),
                  'pos': np_state['state']['pos'], 'has_gauss': np_state['has_gauss'], 'gauss': np_state['gauss']},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Dict) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(state['python'])
    np_state = state['numpy']
    np.random.set_state({'bit_generator': 'MT19937',
                         'state': {'key': np_state['key'].numpy().astype(np.uint32), 'pos': np_state['pos']},
                         'has_gauss': np_state['has_gauss'], 'gauss': np_state['gauss']})
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available() and len(state['cuda']) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state['cuda'])


class ResumableSampler(EnlargedSampler):
    """BasicSR's ``EnlargedSampler`` that tracks how far training is into the epoch and can resume mid-epoch.

    The trainer reports each trained batch with :meth:`consumed`; :meth:`resume_point` is what a training state
    stores. After :meth:`resume_from`, the epoch that the resume point names starts after its ``samples_done``
    samples, and the random generators are restored when the first sample is requested (after the DataLoader has
    drawn its base seed, as in the uninterrupted run). With several processes (DDP) each keeps its own
    generators: only the samples are skipped. Arguments: as ``EnlargedSampler``.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, ratio: int = 1) -> None:
        super().__init__(dataset, num_replicas, rank, ratio)
        self.samples_done = 0
        self._resume: Optional[Dict] = None
        self._skip, self._rng = 0, None

    def resume_from(self, point: Dict) -> None:
        """Continue from ``point`` (a :meth:`resume_point` of a sampler over the same data) at its epoch."""
        self._resume = point

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.samples_done, self._skip, self._rng = 0, 0, None
        if self._resume is not None and self._resume['epoch'] == epoch:
            self.samples_done = self._skip = self._resume['samples_done']
            self._rng = self._resume['rng'] if self.num_replicas == 1 else None
        self._resume = None

    def __iter__(self) -> Iterator[int]:
        # A generator: this body runs when the DataLoader asks for the first index, not when it creates its iterator
        skip, rng = self._skip, self._rng
        self._skip, self._rng = 0, None
        if rng is not None:
            restore_rng(rng)
        yield from itertools.islice(super().__iter__(), skip, None)

    def consumed(self, num_samples: int) -> None:
        """Training has used ``num_samples`` more samples (one batch) of this epoch."""
        self.samples_done += num_samples

    def resume_point(self) -> Dict:
        """Where training is now: epoch, samples of it trained on, epoch length, random generator states."""
        return {'epoch': self.epoch, 'samples_done': self.samples_done, 'epoch_samples': self.num_samples,
                'rng': capture_rng()}
