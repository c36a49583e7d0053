"""Local branch of a TSAB: multi-head self-attention inside non-overlapping S x S windows (Eqs. 8-9).

The dense (training) path keeps AdaM's tokens in *window-major* order, ``(B, nW, S*S, C)``, so that the local
branch takes whole windows without any further permutation; the inference path works in place on the row-major
``(B, H, W, C)`` map and gathers each kept window from it.
"""
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import cpu_route
from .token_linear import token_linear


def to_windows(x: Tensor, window_size: int) -> Tensor:
    """(B, C, H, W) feature map -> (B, nW, S*S, C) window-major tokens, H and W multiples of S.

    Windows are numbered row-major over the (H/S, W/S) grid; tokens row-major inside a window. One copy; none
    beyond it when ``x`` is channels-last.
    """
    b, c, h, w = x.shape
    s = window_size
    x = x.permute(0, 2, 3, 1).reshape(b, h // s, s, w // s, s, c).transpose(2, 3)
    return x.reshape(b, (h // s) * (w // s), s * s, c)


def from_windows(tokens: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """(B, nW, S*S, C) window-major tokens -> (B, C, H, W) channels-last feature map (inverse of
    :func:`to_windows`). Channels-last is the fast layout of CPU convolutions (oneDNN)."""
    b, _, _, c = tokens.shape
    s = window_size
    x = tokens.view(b, height // s, width // s, s, s, c).transpose(2, 3).reshape(b, height, width, c)
    return x.permute(0, 3, 1, 2)


def window_rows(windows: Tensor, grid_width: int, window_size: int) -> Tensor:
    """(K,) row-major window numbers on a grid ``grid_width`` windows wide -> (K, S) numbers of their S rows of S
    tokens in the (H*W/S, S*C) view of a row-major (H, W, C) map: window (r, c), row y is segment
    ``(r*S + y) * W/S + c``. Gathering those segments gives the windows' tokens in window-major order (one copy)."""
    offsets = torch.arange(window_size, device=windows.device) * grid_width
    return (windows // grid_width * window_size * grid_width + windows % grid_width)[:, None] + offsets


def attention_per_head(qkv: Tensor, bias: Tensor, num_heads: int) -> Tensor:
    """Multi-head ``softmax(q k^T / sqrt(d) + bias) v`` head by head, straight from the projected tokens.

    (K, N, 3D) window tokens' [q | k | v] (heads side by side in each), (1, heads, N, N) bias -> (K, N, D) with the
    heads side by side: what ``F.scaled_dot_product_attention`` computes after a head split, but each head's q, k
    and v are strided views that the batched matmuls read in place, so no head split, merge or contiguous copy is
    made. Used for the CPU inference path: with 64-token windows and 16 channels a head PyTorch's fused CPU kernel
    is the slowest option (dense AdaM, 2 threads, interleaved runs: LR 480x270 fused 0.84 s, 4-D matmuls 0.72 s,
    this 0.60 s; 960x540 3.5 / 3.0 / 2.5 s; docs/benchmark.md).
    """
    k, n, three_d = qkv.shape
    d = three_d // 3
    dh = d // num_heads
    out = qkv.new_empty(k, n, d)
    weights = qkv.new_empty(k, n, n)  # one buffer for every head's logits, softmax in place: stays in cache
    for h in range(num_heads):
        q, key, v = (qkv[:, :, part * d + h * dh:part * d + (h + 1) * dh] for part in range(3))  # (K, N, dh) views
        torch.baddbmm(bias[0, h].expand(k, n, n), q, key.transpose(1, 2), alpha=dh**-0.5, out=weights)
        out[:, :, h * dh:(h + 1) * dh] = torch.bmm(torch.softmax(weights, dim=-1, out=weights), v)
    return out


def relative_position_index(window_size: int) -> Tensor:
    """(S*S, S*S) index into a ((2S-1)^2)-entry bias table, as in Swin/SwinIR."""
    s = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(s), torch.arange(s), indexing='ij')).flatten(1)  # (2, S*S)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (s - 1)  # (S*S, S*S, 2), in [0, 2S-2]
    return rel[..., 0] * (2 * s - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    """Window multi-head self-attention with a learned relative position bias.

    Args:
        dim: token width D.
        window_size: window side S.
        num_heads: number of heads (D must be divisible by it).
    """

    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dim={dim} must be divisible by num_heads={num_heads}')
        self.dim = dim
        self.window_size = window_size
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1)**2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer('relative_position_index', relative_position_index(window_size), persistent=False)

    def position_bias(self) -> Tensor:
        """(1, heads, S*S, S*S) additive attention bias (4-D: PyTorch's fused CPU attention kernel takes a 4-D
        mask, a 3-D one falls back to the unfused math path, about 4x slower)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).unsqueeze(0).contiguous()

    def forward(self, windows: Tensor, bias: Tensor) -> Tensor:
        """(K, S*S, D) normalised window tokens, (1, heads, S*S, S*S) bias -> (K, S*S, D) attention output."""
        k, n, d = windows.shape
        qkv = token_linear(windows.reshape(k * n, d), self.qkv.weight, self.qkv.bias)
        if cpu_route.on_cpu_route(windows):
            out = attention_per_head(qkv.view(k, n, 3 * d), bias, self.num_heads)
        else:
            qkv = qkv.view(k, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
            q, key, v = qkv.unbind(0)  # each (K, heads, S*S, D/heads)
            out = F.scaled_dot_product_attention(q, key, v, attn_mask=bias).transpose(1, 2)
        return token_linear(out.reshape(k * n, d), self.proj.weight, self.proj.bias).view(k, n, d)

    def macs(self, num_windows: int) -> int:
        """Multiply-accumulates of :meth:`forward` on ``num_windows`` windows."""
        n, d = self.window_size**2, self.dim
        return num_windows * (n * 4 * d * d + 2 * n * n * d)
