"""Token early exit (Eqs. 15-24): the shared confidence estimator and the halting state across blocks."""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .chunking import CHUNK_TOKENS, bucketed
from .window_attention import to_windows

WINDOW_BUCKET = 16  # windows per call of the windowed estimator are rounded up to a multiple of this
INIT_BIAS = -3.0  # the estimator's last bias at initialisation (ConfidenceEstimator)


def fast_tanh(x: Tensor) -> Tensor:
    """``tanh(x)``; without autograd computed in place as ``2 * sigmoid(2x) - 1`` (the same function): on the CPU
    this build's ``torch.tanh`` is about ten times slower than ``torch.sigmoid`` (9.6 vs 1.0 ms over a 32x272x480
    map, one thread), and it runs on every estimator call of an inference. With autograd: ``torch.tanh``."""
    if torch.is_grad_enabled() and x.requires_grad:
        return torch.tanh(x)
    return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)


class ConfidenceEstimator(nn.Module):
    """Eq. 15: ``C = Sigmoid(Conv3x3(Tanh(Conv3x3(X))))``, one instance shared by all TSABs.

    (B, D, H, W) features -> (B, 1, H, W) confidence in (0, 1).

    ``hidden`` is the width of the first convolution. The paper does not give it; AdaFormer's default 8 (D/8) costs
    4.7k MACs per pixel and call, a quarter of D/2 = 32, with the same PSNR and halting (docs/decisions.md,
    "Estimator width").

    The last bias starts at ``INIT_BIAS`` (-3: C ~ 0.05, so R stays far below 1 - eps over 6 blocks): at the start of
    training no token halts and every block is trained; halting appears as L_USL teaches the estimator which tokens
    are easy. With a zero bias (C ~ 0.5) every token would halt after block 2 from iteration 1 and blocks 3-6 would
    receive no gradient until the estimator unlearned it.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, 3, 1, 1)
        self.conv2 = nn.Conv2d(hidden, 1, 3, 1, 1)
        nn.init.constant_(self.conv2.bias, INIT_BIAS)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.conv2(fast_tanh(self.conv1(x))))

    def macs(self, height: int, width: int, batch: int) -> int:
        per_pixel = 9 * (self.conv1.in_channels * self.conv1.out_channels + self.conv2.in_channels)
        return batch * height * width * per_pixel

    @torch.no_grad()
    def forward_windows(self, x: Tensor, windows: Tensor, window_size: int, fill: Tensor) -> Tuple[Tensor, int]:
        """The same map as :meth:`forward`, computed only in the selected windows (inference).

        Each selected S x S window is computed from its (S+4) x (S+4) neighbourhood (two 3x3 convs need a 2-pixel
        halo), gathered from ``x`` with zeros outside the image, as the zero padding of the first conv; first-conv
        outputs that fall outside the image are zeroed, as the zero padding of the second conv does in
        :meth:`forward`. So selected windows match :meth:`forward` up to float rounding; the others are taken from
        ``fill``. Windows are processed in chunks, so temporaries stay small whatever the image size.

        Args:
            x: (B, D, H, W) features, H and W multiples of S.
            windows: (B, nW) bool, windows to compute (row-major window order).
            window_size: S.
            fill: (B, 1, H, W) values for the windows not computed.

        Returns:
            (B, 1, H, W) confidence and the MACs executed.
        """
        b, _, h, w = x.shape
        s = window_size
        nh, nw = h // s, w // s
        out = fill.clone()
        idx = windows.reshape(-1).nonzero().squeeze(1)
        halo = torch.arange(-2, s + 2, device=x.device)  # patch offsets; the first conv's outputs are [1:-1]
        for part in idx.split(max(1, CHUNK_TOKENS // (s + 4)**2)):
            # a multiple of WINDOW_BUCKET windows (the last one repeated): oneDNN builds a kernel per batch size
            part = bucketed(part, WINDOW_BUCKET)
            bi, wi, wj = part // (nh * nw), part % (nh * nw) // nw, part % nw
            rows, cols = wi[:, None] * s + halo, wj[:, None] * s + halo  # (K, S+4)
            in_rows, in_cols = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
            patches = x[bi[:, None, None], :, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
            patches = patches * (in_rows[:, :, None] & in_cols[:, None, :])[..., None]  # (K, S+4, S+4, D)
            hidden = fast_tanh(F.conv2d(patches.permute(0, 3, 1, 2), self.conv1.weight, self.conv1.bias))
            inside = in_rows[:, 1:-1, None] & in_cols[:, None, 1:-1]  # (K, S+2, S+2)
            conf = torch.sigmoid(F.conv2d(hidden * inside[:, None], self.conv2.weight, self.conv2.bias))
            out.view(b, nh, s, nw, s)[bi, wi, :, wj, :] = conf[:, 0]  # (K, S, S) into their windows
        c_in, c_mid = self.conv1.in_channels, self.conv1.out_channels
        macs = idx.numel() * ((s + 2)**2 * 9 * c_in * c_mid + s * s * 9 * c_mid)
        return out, macs


@dataclass
class HaltingState:
    """Accumulated confidence and halting masks of one forward pass (Eqs. 16, 18-24).

    ``R^l = sum_{i<=l} C^i``. A token halts for the global branch once ``R >= 1 - eps`` (per token), a window halts
    for the local branch once the window mean of R reaches ``1 - eps``. Both masks only grow (once halted, always
    halted); block l uses the masks left by blocks 1..l-1, so block 1 sees every token. R is kept in float32 whatever
    the network's precision: in bfloat16 the sum would be rounded to 8 bits after every block (1 - eps = 0.95 itself
    becomes 0.949).
    """
    window_size: int
    threshold: float
    accumulated: Optional[Tensor] = None  # (B, 1, H, W) R^l
    token_halted: Optional[Tensor] = None  # (B, 1, H, W) bool
    window_halted: Optional[Tensor] = None  # (B, 1, H/S, W/S) bool
    history_token: List[Tensor] = field(default_factory=list)
    history_window: List[Tensor] = field(default_factory=list)

    def update(self, confidence: Tensor) -> None:
        """Add C^l (B, 1, H, W) and halt the tokens/windows whose R crossed the threshold."""
        c = confidence.detach().float()
        self.accumulated = c if self.accumulated is None else self.accumulated + c
        token = self.accumulated >= self.threshold
        window = F.avg_pool2d(self.accumulated, self.window_size) >= self.threshold
        self.token_halted = token if self.token_halted is None else self.token_halted | token
        self.window_halted = window if self.window_halted is None else self.window_halted | window

    def record(self, like: Tensor) -> None:
        """Remember the masks a block runs with; ``like`` is (B, C, H, W), used when nothing has halted yet."""
        b, _, h, w = like.shape
        s = self.window_size
        if self.token_halted is None:
            self.history_token.append(torch.zeros(b, 1, h, w, dtype=torch.bool, device=like.device))
            self.history_window.append(torch.zeros(b, 1, h // s, w // s, dtype=torch.bool, device=like.device))
        else:
            self.history_token.append(self.token_halted)
            self.history_window.append(self.window_halted)

    def needed_windows(self) -> Optional[Tensor]:
        """(B, nW) bool: windows holding a token whose confidence can still change a halting decision (a token
        not halted, or any token of a window not halted); None while nothing halted."""
        masks = self.keep_masks()
        if masks is None:
            return None
        local_keep, global_keep = masks
        return local_keep | global_keep.view(*local_keep.shape, -1).any(dim=-1)

    def keep_masks(self) -> Optional[tuple]:
        """(local_keep (B, nW), global_keep (B, nW*S*S)) in window-major order, or None while nothing halted."""
        if self.token_halted is None:
            return None
        b = self.token_halted.shape[0]
        local_keep = ~self.window_halted.reshape(b, -1)
        global_keep = ~to_windows(self.token_halted, self.window_size).reshape(b, -1)
        return local_keep, global_keep

    def map_keep_masks(self) -> Optional[tuple]:
        """(local_keep (B, H/S, W/S), global_keep (B, H, W)) in map order, or None while nothing halted."""
        if self.token_halted is None:
            return None
        return ~self.window_halted[:, 0], ~self.token_halted[:, 0]
