"""Uncertainty-guided loss L_USL (Eq. 17) that teaches the confidence estimator which tokens may halt."""
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basicsr.utils.registry import LOSS_REGISTRY


@LOSS_REGISTRY.register()
class UncertaintyLoss(nn.Module):
    """``L_USL = sum_l mean(C^l_up * |I_hr - I_sr| + log(1 / (C^l_up + eps)))`` (Eq. 17).

    ``C^l_up`` is the confidence map of block l, cropped to the LR size and bilinearly upsampled to the HR size.
    Per pixel the loss is minimal at ``C = 1 / |e|``: confidence is high where the reconstruction error is small.

    Decisions (the paper leaves them open):

    * ``error_scale`` (default 255): the error is measured on the 0-255 scale, as the paper's release does. With
      errors in [0, 1] almost every pixel has ``|e| < 1``, the optimum ``1/|e|`` saturates the sigmoid at 1, and
      every token halts after the first block. On 0-255, flat regions (|e| < 1 grey level) still reach C = 1
      while edges (|e| of several grey levels) get C << 1 and keep being refined.
    * ``detach_error`` (default True): the error term is a target for the estimator, not a second pixel loss.
      Without the detach the term would add ``error_scale * C`` times an L1 gradient to the SR network, a weight
      hundreds of times larger than the L1 loss, concentrated on the easy (confident) pixels. With it, L1 alone
      trains reconstruction and L_USL alone trains the estimator (which also sees detached features), so ``alpha``
      tunes halting without changing what the SR network learns.

    Args:
        loss_weight: alpha of the total loss ``L1 + alpha * L_USL``.
        reduction: 'mean' (mean over pixels, summed over blocks) or 'sum' (summed over pixels and blocks).
        error_scale: factor applied to ``|I_hr - I_sr|`` (images in [0, 1]).
        eps: the epsilon inside the log.
        detach_error: stop the gradient of the error term into the SR output.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 reduction: str = 'mean',
                 error_scale: float = 255.0,
                 eps: float = 1e-8,
                 detach_error: bool = True) -> None:
        super().__init__()
        if reduction not in ('mean', 'sum'):
            raise ValueError(f"UncertaintyLoss: reduction must be 'mean' or 'sum', got {reduction!r}")
        if error_scale <= 0:
            raise ValueError(f'UncertaintyLoss: error_scale must be > 0, got {error_scale}')
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.error_scale = error_scale
        self.eps = eps
        self.detach_error = detach_error

    def forward(self,
                confidences: Sequence[Tensor],
                sr: Tensor,
                gt: Tensor,
                lq_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """
        Args:
            confidences: L maps (B, 1, h', w'), possibly padded beyond the LR size.
            sr: (B, C, H, W) network output in [0, 1].
            gt: (B, C, H, W) ground truth in [0, 1].
            lq_size: (h, w) of the unpadded LR input; the maps are cropped to it before upsampling. None: the
                maps are used as they are.

        Returns:
            Scalar loss, already multiplied by ``loss_weight``.
        """
        if len(confidences) == 0:
            raise ValueError('UncertaintyLoss: got no confidence maps; the network must return aux["confidences"]')
        if sr.shape != gt.shape:
            raise ValueError(f'UncertaintyLoss: sr {tuple(sr.shape)} and gt {tuple(gt.shape)} differ in shape')
        error = (gt - sr).abs() * self.error_scale
        if self.detach_error:
            error = error.detach()
        total = sr.new_zeros(())
        for i, conf in enumerate(confidences):
            if conf.dim() != 4 or conf.shape[0] != sr.shape[0] or conf.shape[1] != 1:
                raise ValueError(f'UncertaintyLoss: confidence map {i} has shape {tuple(conf.shape)}, '
                                 f'expected ({sr.shape[0]}, 1, h, w)')
            if lq_size is not None:
                conf = conf[..., :lq_size[0], :lq_size[1]]
            conf = F.interpolate(conf, size=gt.shape[-2:], mode='bilinear', align_corners=False)
            per_pixel = conf * error - torch.log(conf + self.eps)  # Eq. 17; log(1/x) = -log(x)
            total = total + (per_pixel.mean() if self.reduction == 'mean' else per_pixel.sum())
        return self.loss_weight * total
