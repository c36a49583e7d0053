"""Training throughput: optimiser steps per second (forward + backward + Adam) on random batches.

AdaFormer trains as ``AdaFormerModel`` does: ``forward(return_aux=True)``, L1 + UncertaintyLoss (alpha 1, errors
on the 0-255 scale); other networks with L1 alone. Adam (lr 2e-4, betas 0.9/0.999) as in the training options.
With ``autocast`` precisions each network also trains under ``torch.autocast`` in them, as ``train.autocast`` does
(forward in mixed precision, losses and weights in float32), as rows ``<name> [<dtype> autocast]``.
The trainers take their steps interleaved (one step of each per round, rotated like the latency rounds).
"""
import copy
import functools
from typing import Callable, Dict, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..archs.adaformer_arch import AdaFormer
from ..losses.uncertainty_loss import UncertaintyLoss
from ..utils.precision import mixed_precision, parse_autocast, to_float32
from .networks import bare
from .runner import interleaved_rounds, summarise


class _Trainer:
    """One network with its optimiser and loss; :meth:`step` runs one training iteration on (lq, gt)."""

    def __init__(self, net: nn.Module, device: torch.device, autocast: torch.dtype = torch.float32) -> None:
        self.net = copy.deepcopy(net).to(device).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=2e-4, betas=(0.9, 0.999))
        self.usl = UncertaintyLoss() if isinstance(bare(self.net), AdaFormer) else None
        self.autocast = autocast

    def step(self, lq: Tensor, gt: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with mixed_precision(lq.device.type, self.autocast):
            if self.usl is not None:
                sr, aux = to_float32(bare(self.net)(lq, return_aux=True))  # AdaFormer pads by itself
            else:
                sr = to_float32(self.net(lq))
        if self.usl is not None:
            loss = F.l1_loss(sr, gt) + self.usl(aux['confidences'], sr, gt, lq_size=lq.shape[-2:])
        else:
            loss = F.l1_loss(sr, gt)
        loss.backward()
        self.optimizer.step()


def train_throughput(nets: Dict[str, nn.Module], batch_size: int, lr_patch: int, scale: int, steps: int,
                     warmup: int, device: torch.device, step_done: Callable[[], None],
                     autocast: Sequence[str] = ()) -> Dict:
    """Interleaved training steps of ``nets`` (and of each in the ``autocast`` precisions) on
    (batch_size, 3, lr_patch, lr_patch) random LR batches.

    Returns per row (network, or network under autocast) its network's name, the step time summary (ms),
    iterations/s (1 / median step time) and LR pixels/s, plus the round order.
    """
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(batch_size, 3, lr_patch, lr_patch, generator=gen).to(device)
    gt = torch.rand(batch_size, 3, lr_patch * scale, lr_patch * scale, generator=gen).to(device)
    rows = {name: (name, torch.float32) for name in nets}  # row -> (network, autocast dtype)
    rows.update({f'{name} [{dtype} autocast]': (name, parse_autocast(dtype)) for dtype in autocast for name in nets})
    trainers = {row: _Trainer(nets[name], device, dtype) for row, (name, dtype) in rows.items()}
    times, schedule = interleaved_rounds({name: functools.partial(t.step, lq, gt) for name, t in trainers.items()},
                                         steps, warmup, device, step_done)
    results = {}
    for name in trainers:
        summary = summarise(times[name])
        results[name] = {
            'network': rows[name][0],
            'step_ms': summary,
            'iters_per_s': 1000.0 / summary['median'],
            'lr_pixels_per_s': batch_size * lr_patch**2 * 1000.0 / summary['median'],
        }
    return {'batch_size': batch_size, 'lr_patch': lr_patch, 'steps': steps, 'warmup': warmup,
            'losses': {'AdaFormer': 'L1 + UncertaintyLoss', 'others': 'L1'}, 'optimizer': 'Adam lr 2e-4',
            'networks': results, 'schedule': schedule}
