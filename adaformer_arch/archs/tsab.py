"""Texture-relevant sparse attention block (TSAB, Eqs. 8-14) with its two execution paths.

One block is, for window-major tokens ``x`` of shape (B, nW, S*S, D)::

    x = x + m_loc * Local(LN1(x)) + m_glob * Global(LN1(x))      # Eqs. 8-13
    x = x + m_mlp * MLP(LN2(x))                                  # Eq. 14

``m_loc`` keeps a token when its window is not halted, ``m_glob`` when the token itself is not halted, and
``m_mlp = m_loc | m_glob``: a token halted in both branches is frozen, a token still active in one branch is refined
by the MLP. With no masks (the first block, or early exit off) every token is computed.

* :meth:`TSAB.forward_dense` computes every token and multiplies by the masks (training, verification).
* :meth:`TSAB.forward_inference` works on a row-major token map in place: it gathers only the kept windows/tokens,
  computes them and scatters the results back, in pieces of a few thousand tokens (bounded memory). Both give the
  same result; this path is what makes halted tokens free.
"""
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from . import cpu_route
from .chunking import CHUNK_TOKENS, bucketed, chunked
from .prototype_attention import PrototypeAttention
from .token_linear import ROW_BUCKET, token_linear
from .window_attention import WindowAttention, window_rows

# Tokens per step of the inference path on the CPU: a piece's tokens and the temporaries of one block (about 1 MB
# each at D=64) stay in the CPU caches from one operation to the next. Measured at LR 480x270: the 6 blocks take 35 %
# less time than with 64k-token chunks (one thread; 37 % with two); 1k-16k tokens are within a few % of each other.
# On a GPU, where every chunk costs kernel launches and caches matter less, chunks of CHUNK_TOKENS.
INFERENCE_CHUNK_TOKENS = 4096


class Mlp(nn.Module):
    """Token MLP (the paper's 1x1 conv - GELU - 1x1 conv). (..., D) -> (..., D), through :func:`token_linear`."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.act(token_linear(x, self.fc1.weight, self.fc1.bias))
        return token_linear(hidden, self.fc2.weight, self.fc2.bias)

    def macs(self, num_tokens: int) -> int:
        return num_tokens * 2 * self.fc1.in_features * self.fc1.out_features


class TSAB(nn.Module):
    """Texture-relevant sparse attention block.

    Args:
        dim: token width D.
        num_heads: heads of both attention branches.
        window_size: S of the local branch.
        num_prototypes: M of the global branch.
        mlp_ratio: hidden width of the MLP relative to D.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, num_prototypes: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.local_attn = WindowAttention(dim, window_size, num_heads)
        self.global_attn = PrototypeAttention(dim, num_prototypes, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _local(self, windows: Tensor) -> Tensor:
        """(K, S*S, D) raw window tokens -> (K, S*S, D) local-branch output, in chunks of windows."""
        bias = self.local_attn.position_bias()
        per_chunk = max(1, CHUNK_TOKENS // windows.shape[1])
        return chunked(lambda w: self.local_attn(self.norm1(w), bias), windows, per_chunk)

    def _mlp(self, tokens: Tensor) -> Tensor:
        """(T, D) -> (T, D) MLP output, in chunks of tokens."""
        return chunked(lambda t: self.mlp(self.norm2(t)), tokens, CHUNK_TOKENS)

    def forward_dense(self,
                      x: Tensor,
                      local_keep: Optional[Tensor] = None,
                      global_keep: Optional[Tensor] = None) -> Tuple[Tensor, int]:
        """Masked-dense path.

        Args:
            x: (B, nW, S*S, D) window-major tokens.
            local_keep: (B, nW) bool, True = window computed; None = all.
            global_keep: (B, nW*S*S) bool, True = token computed; None = all. Given iff ``local_keep`` is.

        Returns:
            (B, nW, S*S, D) updated tokens and the MACs executed.
        """
        b, nw, n, d = x.shape
        loc = self._local(x.reshape(b * nw, n, d)).view(b, nw, n, d)
        glob = self.global_attn(self.norm1(x.reshape(b, nw * n, d)), global_keep).view(b, nw, n, d)
        if local_keep is None:
            x = x + loc + glob
            x = x + self._mlp(x.reshape(-1, d)).view_as(x)
        else:
            global_keep = global_keep.view(b, nw, n, 1)
            x = x + loc * local_keep[:, :, None, None] + glob * global_keep
            mlp_keep = local_keep[:, :, None, None] | global_keep
            x = x + self._mlp(x.reshape(-1, d)).view_as(x) * mlp_keep
        macs = self.local_attn.macs(b * nw) + self.global_attn.macs(b * nw * n, b) + self.mlp.macs(b * nw * n)
        return x, macs

    @torch.no_grad()
    def forward_inference(self,
                          x: Tensor,
                          local_keep: Optional[Tensor] = None,
                          global_keep: Optional[Tensor] = None) -> Tuple[Tensor, int]:
        """Inference path: the result of :meth:`forward_dense`, on a row-major map updated in place; only kept
        windows/tokens are computed, image by image, in pieces of about ``INFERENCE_CHUNK_TOKENS`` tokens, so that
        besides ``x`` only piece-sized temporaries are allocated, whatever the image size.

        The map stays row-major (the memory of AdaM's channels-last feature map), so the confidence estimator and
        the output convolution read it without a copy. A window kept by the local branch has all its tokens in the
        MLP (``m_mlp = m_loc | m_glob``), so it goes through the block whole: its S rows of S tokens, each contiguous
        in the map, are gathered straight into window-major order (one copy), computed as in the dense path and
        copied back. Of a halted window, only the tokens still kept by the global branch are gathered (read-back and
        MLP). In place is exact: the prototypes first read every kept token of the image (Eqs. 10-11); after that,
        a piece's updates read only its own tokens, which no other piece writes.

        Args:
            x: (B, H, W, D) contiguous token map, H and W multiples of S; updated in place.
            local_keep: (B, H/S, W/S) bool, True = window computed; None = all.
            global_keep: (B, H, W) bool, True = token computed; None = all. Given iff ``local_keep`` is.

        Returns:
            ``x`` and the MACs executed.
        """
        b, h, w, d = x.shape
        s = self.local_attn.window_size
        n = s * s
        chunk_tokens = INFERENCE_CHUNK_TOKENS if cpu_route.on_cpu_route(x) else CHUNK_TOKENS
        bias = self.local_attn.position_bias()
        macs = 0
        for i in range(b):
            image = x[i]  # (H, W, D) view
            keep = None if global_keep is None else global_keep[i]
            global_index = None if keep is None else keep.reshape(-1).nonzero().squeeze(1)  # its kept tokens
            prototypes = self.global_attn.gather_prototypes(
                self._kept_tokens(image.view(-1, d), global_index, chunk_tokens))  # Eqs. 10-11
            read = self.global_attn.fold_read(prototypes)  # Eqs. 12-13 as two GEMMs per piece
            kept_tokens = h * w if global_index is None else global_index.numel()
            if kept_tokens:
                macs += self.global_attn.gather_macs(kept_tokens, 1)
            if keep is None:
                windows = torch.arange((h // s) * (w // s), device=x.device)
                loose = windows[:0]
            else:
                windows = local_keep[i].reshape(-1).nonzero().squeeze(1)
                open_window = local_keep[i][:, None, :, None].expand(-1, s, -1, s).reshape(-1)
                loose = (keep.reshape(-1) & ~open_window).nonzero().squeeze(1)
            rows = window_rows(windows, w // s, s)  # (K, S) row-major numbers of the windows' rows of S tokens
            segments = image.view(h * w // s, s * d)
            for part in rows.split(max(1, chunk_tokens // n)) if rows.numel() else ():
                # whole windows, their count rounded up (token_linear then pads nothing)
                padded = bucketed(part, max(1, ROW_BUCKET // n)).reshape(-1)
                kept = segments.index_select(0, padded).view(-1, n, d)
                kept_global = None if keep is None else keep.view(-1, s)[padded].view(-1, n)
                self._update_windows(kept, kept_global, read, bias)
                segments.index_copy_(0, part.reshape(-1), kept.view(-1, s * d)[:part.numel()])
            tokens = image.view(h * w, d)
            for part in loose.split(chunk_tokens) if loose.numel() else ():
                kept = tokens.index_select(0, bucketed(part, ROW_BUCKET))
                kept += self.global_attn.read_tokens(self.norm1(kept), read)
                kept += self.mlp(self.norm2(kept))
                tokens.index_copy_(0, part, kept[:part.numel()])
            computed = windows.numel() * n + loose.numel()
            macs += (self.local_attn.macs(windows.numel()) + self.mlp.macs(computed)
                     + self.global_attn.read_macs(computed))
        return x, macs

    def _kept_tokens(self, tokens: Tensor, kept: Optional[Tensor], chunk: int) -> Iterator[Tensor]:
        """(T, D) tokens of one image, optional (K,) numbers of the kept ones (None = all) -> the normalised kept
        tokens, ``chunk`` at a time: few and full pieces however sparse the map (index_select: about half the time
        of boolean indexing)."""
        if kept is None:
            for start in range(0, tokens.shape[0], chunk):
                yield self.norm1(tokens[start:start + chunk])
        else:
            for part in kept.split(chunk) if kept.numel() else ():
                yield self.norm1(tokens.index_select(0, part))

    def _update_windows(self, windows: Tensor, global_keep: Optional[Tensor], read: Tuple[Tensor, ...],
                        bias: Tensor) -> None:
        """Whole windows through the block, in place: (K, S*S, D) window tokens, optional (K, S*S) global keep
        mask (None = all), the image's folded read-back (``PrototypeAttention.fold_read``). One LayerNorm feeds
        both branches; the global branch is computed for every token and masked, as its read-back is a small part
        of a token's cost."""
        k, n, d = windows.shape
        tokens = windows.view(k * n, d)
        normed = self.norm1(windows)
        loc = self.local_attn(normed, bias)
        glob = self.global_attn.read_tokens(normed.view(k * n, d), read)
        if global_keep is not None:
            glob.mul_(global_keep.reshape(k * n, 1))
        windows += loc
        tokens += glob
        tokens += self.mlp(self.norm2(tokens))
