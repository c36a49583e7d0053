"""AdaFormer (Luo et al., AAAI 2024): CNN encoder, adaptive transformer module (AdaM) with token early exit, CNN
decoder, pixel-shuffle reconstruction."""
import numbers
from typing import Dict, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer
from basicsr.utils.registry import ARCH_REGISTRY

from .token_halting import ConfidenceEstimator, HaltingState
from .tsab import TSAB
from .window_attention import from_windows, to_windows


# Above this fraction of windows, the windowed estimator (halo: (S+2)^2 instead of S^2 first-conv outputs for S=8,
# plus the patch gather) is dearer than running it on the whole map. Measured with the default 8-channel estimator
# at LR 480x272, 2 threads, random window sets, interleaved: windowed 3.3-3.7 ms at 10 % of the windows, 5.5 ms at
# 18 %, 6.2-6.5 ms at 20 %, 7.9 ms at 22 %; whole map 7.0 ms.
WINDOWED_ESTIMATOR_MAX_FRACTION = 0.18


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """(B, C, h, w) -> (B, C, h', w'), padded at the bottom/right to multiples of ``multiple`` (reflect, or
    replicate when the image is smaller than the pad)."""
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = 'reflect' if pad_h < h and pad_w < w else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def recording_graph() -> bool:
    """True while ``torch.jit.trace`` (also under ``torch.onnx.export``) or ``torch.export`` records a forward.

    The sparse path's kept-token sets have data-dependent sizes: a trace would freeze the sets of the example input
    and give wrong results on any other image (without an error), and ``torch.export`` refuses them. The
    masked-dense path computes the same result with shapes that depend only on the input size."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def channels_last(x: Tensor) -> Tensor:
    """(B, C, H, W) -> the same values in channels-last memory with the standard strides.

    ``x.contiguous(memory_format=torch.channels_last)`` leaves alone a tensor that is channels-last but for an
    unusual batch stride, e.g. one image read as HWC and turned into (1, C, H, W) by ``img2tensor(img).unsqueeze(0)``
    (strides (C, 1, W*C, C)). Convolutions do not recognise that layout as channels-last, compute in NCHW and hand
    it on to every following layer (the conv floor at LR 480x270: 1.05 instead of 0.78 s). This copies it once.
    """
    if x.is_contiguous(memory_format=torch.channels_last) and x.stride(0) == x[0].numel():
        return x
    if recording_graph():  # a recorded graph has no memory layout (and ONNX has no in-place copy)
        return x.contiguous(memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


def conv_macs(conv: nn.Conv2d, height: int, width: int, batch: int) -> int:
    """MACs of a stride-1, 'same'-padded convolution over a (batch, C, height, width) input."""
    kh, kw = conv.kernel_size
    return batch * height * width * kh * kw * conv.in_channels // conv.groups * conv.out_channels


def residual_blocks(blocks: nn.Sequential, x: Tensor) -> Tensor:
    """Runs a stack of BasicSR ``ResidualBlockNoBN`` (x + res_scale * conv2(relu(conv1(x)))), (B, C, H, W) ->
    (B, C, H, W). Without autograd it runs in place: one block then holds its input and two convolution outputs
    instead of four full-size temporaries (at 8K sizes each is half a gigabyte). Same result."""
    if torch.is_grad_enabled():
        return blocks(x)
    for block in blocks:
        out = block.conv2(block.relu(block.conv1(x)))
        if block.res_scale != 1:
            out.mul_(block.res_scale)
        x = out.add_(x)
    return x


class AdaM(nn.Module):
    """Adaptive transformer module: 1x1 conv, ``depth`` TSABs sharing one confidence estimator, 1x1 conv, and a
    residual around all of it. (B, C, H, W) -> (B, C, H, W), H and W multiples of the window size."""

    def __init__(self, num_feat: int, embed_dim: int, depth: int, num_heads: int, window_size: int,
                 num_prototypes: int, mlp_ratio: float, estimator_dim: int) -> None:
        super().__init__()
        self.window_size = window_size
        # 1x1 convs with channels-last weights, like their input: PyTorch then sends them to oneDNN, while a
        # contiguous 1x1 weight on a channels-last input takes a slower generic path (15 vs 23 ms at 480x270)
        self.conv_in = nn.Conv2d(num_feat, embed_dim, 1).to(memory_format=torch.channels_last)
        self.blocks = nn.ModuleList(
            [TSAB(embed_dim, num_heads, window_size, num_prototypes, mlp_ratio) for _ in range(depth)])
        self.estimator = ConfidenceEstimator(embed_dim, estimator_dim)
        self.conv_out = nn.Conv2d(embed_dim, num_feat, 1).to(memory_format=torch.channels_last)
        self.apply(self._init_linear)

    @staticmethod
    def _init_linear(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, early_exit: bool, halt_eps: float, sparse: bool,
                need_confidences: bool) -> Tuple[Tensor, Dict]:
        b, _, h, w = x.shape
        s = self.window_size
        feat = self.conv_in(x).contiguous(memory_format=torch.channels_last)  # (B, D, H, W)
        # inference: the blocks update the row-major (B, H, W, D) memory of ``feat`` in place, which the estimator
        # and conv_out then read without a copy; training: window-major tokens (B, nW, S*S, D)
        tokens = feat.permute(0, 2, 3, 1) if sparse else to_windows(feat, s)
        state = HaltingState(window_size=s, threshold=1.0 - halt_eps)
        confidences = []
        macs = conv_macs(self.conv_in, h, w, b) + conv_macs(self.conv_out, h, w, b)
        macs_for_aux = 0  # estimator calls that only return_aux / training make
        for depth, block in enumerate(self.blocks):
            state.record(x)
            if sparse:  # in place, only the kept tokens, bounded temporaries
                masks = state.map_keep_masks() if early_exit else None
                needed = state.needed_windows() if early_exit else None
                tokens, block_macs = block.forward_inference(tokens, *(masks or ()))
            else:
                masks = state.keep_masks() if early_exit else None
                needed = None
                tokens, block_macs = block.forward_dense(tokens, *(masks or ()))
            macs += block_macs
            is_last = depth == len(self.blocks) - 1
            needed_for_halting = early_exit and not is_last
            if need_confidences or needed_for_halting:
                # The estimator sees detached features: it is trained by L_USL alone, and L_USL does not push the
                # SR features towards being "confident" at the expense of reconstruction (Eq. 15, as released).
                features = (feat if sparse else from_windows(tokens, s, h, w)).detach()
                if needed is None or needed.float().mean() > WINDOWED_ESTIMATOR_MAX_FRACTION:
                    confidence = self.estimator(features)
                    conf_macs = self.estimator.macs(h, w, b)
                else:  # only where a halting decision is still open; elsewhere keep the last value
                    confidence, conf_macs = self.estimator.forward_windows(features, needed, s, confidences[-1])
                macs += conf_macs
                if not needed_for_halting:
                    macs_for_aux += conf_macs
                del features
                confidences.append(confidence)
                if early_exit:
                    state.update(confidence)
        if not sparse:
            feat = from_windows(tokens, s, h, w)
        del tokens  # at 8K sizes every feature map counts
        out = self.conv_out(feat).add_(x)
        aux = {
            'confidences': confidences,
            'global_halted': state.history_token,
            'local_halted': state.history_window,
            'macs': macs,
            'macs_for_aux': macs_for_aux,
        }
        return out, aux


@ARCH_REGISTRY.register()
class AdaFormer(nn.Module):
    """AdaFormer super-resolution network.

    Args:
        num_in_ch: input channels.
        num_out_ch: output channels.
        num_feat: CNN width C.
        upscale: scale factor (2, 3, 4, ...).
        embed_dim: token width D of AdaM.
        num_block_enc: residual blocks of the encoder.
        num_block_dec: residual blocks of the decoder.
        depth: number of TSABs L.
        num_heads: attention heads.
        window_size: local window side S (inputs are reflect-padded to a multiple of it).
        num_prototypes: M of the global branch.
        mlp_ratio: MLP hidden width / D.
        estimator_dim: hidden channels of the confidence estimator (not given by the paper; see docs/decisions.md).
        halt_eps: epsilon_h; a token halts once its accumulated confidence reaches 1 - halt_eps.
        early_exit: False disables halting (the dense model).
        sparse_compute: False = in eval, compute halted tokens too and mask them (same result, no speed-up; for
            verification).
        img_range: input scaling after mean subtraction.
        rgb_mean: mean subtracted from the input, added back to the output (as BasicSR's EDSR).

    ``halt_eps``, ``early_exit`` and ``sparse_compute`` are also attributes that may be changed after loading
    weights (none of them changes the parameters; ``halt_eps`` is checked when set).

    Halted tokens are skipped (and memory stays bounded) in eval mode without autograd (``torch.no_grad()`` or
    ``torch.inference_mode()``, as BasicSR's test loop and ``basicsr infer`` run); in eval mode with autograd on, the
    same result comes from the masked-dense path, which keeps gradients, and so does ``torch.jit.trace``,
    ``torch.onnx.export`` or ``torch.export`` (the traced graph then holds no data-dependent shapes).
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_out_ch: int = 3,
                 num_feat: int = 64,
                 upscale: int = 4,
                 embed_dim: int = 64,
                 num_block_enc: int = 8,
                 num_block_dec: int = 8,
                 depth: int = 6,
                 num_heads: int = 4,
                 window_size: int = 8,
                 num_prototypes: int = 16,
                 mlp_ratio: float = 2.,
                 estimator_dim: int = 8,
                 halt_eps: float = 0.05,
                 early_exit: bool = True,
                 sparse_compute: bool = True,
                 img_range: float = 1.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)) -> None:
        super().__init__()
        if len(rgb_mean) != num_in_ch:
            raise ValueError(f'rgb_mean has {len(rgb_mean)} values but num_in_ch={num_in_ch}')
        for name, value in (('upscale', upscale), ('window_size', window_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        if estimator_dim < 1:
            raise ValueError(f'estimator_dim must be >= 1, got {estimator_dim}')
        self.upscale = upscale
        self.window_size = window_size
        self.img_range = img_range
        self.halt_eps = halt_eps  # checked by the property
        self.early_exit = early_exit
        self.sparse_compute = sparse_compute
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.encoder = make_layer(ResidualBlockNoBN, num_block_enc, num_feat=num_feat)
        self.adam = AdaM(num_feat, embed_dim, depth, num_heads, window_size, num_prototypes, mlp_ratio,
                         estimator_dim)
        self.decoder = make_layer(ResidualBlockNoBN, num_block_dec, num_feat=num_feat)
        self.conv_up = nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    @property
    def halt_eps(self) -> float:
        """epsilon_h: a token halts once its accumulated confidence reaches 1 - halt_eps (Eq. 16); in [0, 1)."""
        return self._halt_eps

    @halt_eps.setter
    def halt_eps(self, value: float) -> None:
        # 1 would halt every token after the first block, a negative value or NaN would never halt one
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
            raise ValueError(f'halt_eps must be in [0, 1), got {value!r}')
        self._halt_eps = float(value)

    def check_input(self, lq: Tensor) -> None:
        """Raises a ValueError for what the network would otherwise broadcast or misread: ``lq`` must be a
        floating-point (B, num_in_ch, h, w) tensor (values in [0, 1])."""
        channels = self.conv_first.in_channels
        if lq.dim() != 4 or lq.shape[1] != channels:
            hint = (' (a single image needs a batch dimension: lq.unsqueeze(0))' if lq.dim() == 3
                    and lq.shape[0] == channels else '')
            raise ValueError(f'AdaFormer takes a (B, {channels}, h, w) tensor, got shape {tuple(lq.shape)}{hint}')
        if not lq.is_floating_point():
            raise ValueError(f'AdaFormer takes floating-point input in [0, 1], got {lq.dtype} (for 8-bit images: '
                             'lq.float() / 255)')

    def encode(self, lq: Tensor) -> Tuple[Tensor, Tensor]:
        """(B, num_in_ch, h, w) in [0, 1] -> (head, features): the head conv's and the encoder's outputs, each
        (B, num_feat, h', w') channels-last, h' and w' padded up to multiples of the window (AdaM's input)."""
        # channels-last: the fast memory layout of CPU (oneDNN) and GPU convolutions alike
        x = channels_last(pad_to_multiple((lq - self.mean) * self.img_range, self.window_size))
        head = self.conv_first(x)
        return head, residual_blocks(self.encoder, head)

    def forward(self, lq: Tensor, return_aux: bool = False) -> Union[Tensor, Tuple[Tensor, Dict]]:
        """(B, num_in_ch, h, w) in [0, 1] -> (B, num_out_ch, h*s, w*s).

        With ``return_aux=True`` also returns a dict: ``confidences`` (L maps (B,1,h',w'), h',w' = padded LR size;
        in the sparse path, positions whose halting is decided keep the last value computed for them),
        ``global_halted`` (L bool maps (B,1,h',w'), True = token skipped by the global branch of that block),
        ``local_halted`` (L bool maps (B,1,h'/S,w'/S)), ``macs`` (int, executed multiply-accumulates) and
        ``macs_for_aux`` (int, the part of ``macs`` spent on confidence-estimator calls that only ``return_aux``
        makes: after the last block, and in every block without early exit; a plain forward skips them).
        """
        self.check_input(lq)
        h, w = lq.shape[-2:]
        head, feat = self.encode(lq)
        b, _, hp, wp = head.shape
        # the inference path (gathered, in place) needs eval mode and no autograd; with autograd on, eval runs the
        # masked-dense path, so gradients (e.g. to the input) stay correct; so does a trace or export
        sparse = self.sparse_compute and not self.training and not torch.is_grad_enabled() and not recording_graph()
        feat, aux = self.adam(
            feat, self.early_exit, self.halt_eps, sparse, need_confidences=return_aux or self.training)
        feat = residual_blocks(self.decoder, feat).add_(head)
        del head  # in place and freed early: at 8K sizes every feature map counts
        out = self.pixel_shuffle(self.conv_up(feat))
        del feat
        out = out.div_(self.img_range).add_(self.mean)
        out = out[..., :h * self.upscale, :w * self.upscale].contiguous()
        if not return_aux:
            return out
        cnn_macs = conv_macs(self.conv_first, hp, wp, b) + conv_macs(self.conv_up, hp, wp, b)
        for block in list(self.encoder) + list(self.decoder):
            cnn_macs += conv_macs(block.conv1, hp, wp, b) + conv_macs(block.conv2, hp, wp, b)
        aux['macs'] += cnn_macs
        return out, aux
