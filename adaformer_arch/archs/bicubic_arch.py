"""Bicubic: parameter-free MATLAB ``imresize(lq, upscale, 'bicubic')``, the baseline row of SR tables."""
import functools
from typing import Tuple

import torch
from torch import Tensor, nn

from basicsr.utils.matlab_functions import calculate_weights_indices
from basicsr.utils.registry import ARCH_REGISTRY


@functools.lru_cache(maxsize=64)
def axis_weights(in_length: int, scale: int) -> Tuple[Tensor, Tensor]:
    """MATLAB bicubic taps along one axis of length ``in_length`` upsampled ``scale`` times.

    Returns ``weights`` (out, k) float32 and ``indices`` (out, k) int64 into the input, with MATLAB's symmetric
    border (``x[-1] = x[0]``, ``x[n] = x[n-1]``) folded into the indices: output ``i`` is
    ``sum_t weights[i, t] * x[indices[i, t]]``. The weights are BasicSR's ``calculate_weights_indices``.
    """
    out_length = in_length * scale
    weights, indices, sym_len_start, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4, True)
    src = indices.long() - sym_len_start  # 0-based input positions, may lie outside [0, in_length)
    src = torch.where(src < 0, -src - 1, src)
    src = torch.where(src >= in_length, 2 * in_length - 1 - src, src)
    # inputs shorter than the kernel (1-2 px) would reflect past the far border: clamp them to it
    return weights.float(), src.clamp_(0, in_length - 1)


@ARCH_REGISTRY.register()
class Bicubic(nn.Module):
    """MATLAB bicubic upsampling, as ``basicsr.utils.matlab_functions.imresize(img, upscale)`` but batched and
    vectorised (one row gather and multiply-add per kernel tap and axis): fast enough for 8K outputs.

    (B, C, h, w) in [0, 1] -> (B, C, h*upscale, w*upscale), not clamped or rounded (as MATLAB on double input).
    No parameters: use it with no ``pretrain_network_g``. ``num_in_ch``/``num_out_ch`` are accepted so that it is a
    drop-in ``network_g``; they must be equal.
    """

    def __init__(self, upscale: int = 4, num_in_ch: int = 3, num_out_ch: int = 3) -> None:
        super().__init__()
        if num_in_ch != num_out_ch:
            raise ValueError(f'Bicubic keeps the channels: num_in_ch ({num_in_ch}) must equal num_out_ch '
                             f'({num_out_ch})')
        if int(upscale) != upscale or upscale < 1:
            raise ValueError(f'Bicubic needs an integer upscale >= 1, got {upscale}')
        self.upscale = int(upscale)

    def _resize_rows(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H*upscale, W): gathers whole rows, the fast direction in memory."""
        weights, indices = axis_weights(x.shape[2], self.upscale)
        weights, indices = weights.to(x), indices.to(x.device)
        out = x.index_select(2, indices[:, 0]) * weights[:, 0].view(1, 1, -1, 1)
        for t in range(1, weights.shape[1]):
            out.addcmul_(x.index_select(2, indices[:, t]), weights[:, t].view(1, 1, -1, 1))
        return out

    def forward(self, lq: Tensor) -> Tensor:
        if lq.dim() != 4:
            raise ValueError(f'Bicubic expects (B, C, h, w), got shape {tuple(lq.shape)}')
        # width first, on the small input transposed so that it too gathers rows; the result equals BasicSR's
        # height-then-width order up to float rounding (separable weights)
        wide = self._resize_rows(lq.transpose(2, 3).contiguous()).transpose(2, 3).contiguous()
        return self._resize_rows(wide)
