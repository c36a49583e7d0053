"""Texture-relevant sparse attention block (TSAB, Eqs. 8-14) with its two execution paths.

One block is, for window-major tokens ``x`` of shape (B, nW, S*S, D)::

    x = x + m_loc * Local(LN1(x)) + m_glob * Global(LN1(x))      # Eqs. 8-13
    x = x + m_mlp * MLP(LN2(x))                                  # Eq. 14

``m_loc`` keeps a token when its window is not halted, ``m_glob`` when the token itself is not halted, and
``m_mlp = m_loc | m_glob``: a token halted in both branches is frozen, a token still active in one branch is refined
by the MLP. With no masks (the first block, or early exit off) every token is computed.

* :meth:`TSAB.forward_dense` computes every token and multiplies by the masks (training, verification).
* :meth:`TSAB.forward_inference` works on a row-major token map in place: it gathers only the kept windows/tokens,
  computes them and scatters the results back, in chunks of windows (bounded memory). Both give the same result;
  this path is what makes halted tokens free.
"""
from typing import Iterator, Optional, Tuple

import torch
from torch import Tensor, nn

from .chunking import CHUNK_TOKENS, bucketed, chunked
from .prototype_attention import PrototypeAttention
from .token_linear import ROW_BUCKET, token_linear
from .window_attention import WindowAttention, window_grid

# Tokens per step of the inference path on the CPU: a chunk's tokens and the temporaries of one block (about 1 MB
# each at D=64) stay in the CPU caches from one operation to the next. Measured at LR 480x270: the 6 blocks take 35 %
# less time than with 64k-token chunks (one thread; 37 % with two); 1k-16k tokens are within a few % of each other.
# On a GPU, where every chunk costs kernel launches and caches matter less, chunks of CHUNK_TOKENS.
INFERENCE_CHUNK_TOKENS = 4096


def window_chunks(rows: int, cols: int, per_chunk: int) -> Iterator[Tuple[slice, slice]]:
    """Splits a (rows, cols) grid of windows into rectangles of at most ``per_chunk`` windows (about that many):
    runs of whole window rows when a row has at most ``per_chunk`` windows, else segments of one row."""
    if cols <= per_chunk:
        step = per_chunk // cols
        for r in range(0, rows, step):
            yield slice(r, min(r + step, rows)), slice(0, cols)
    else:
        for r in range(rows):
            for c in range(0, cols, per_chunk):
                yield slice(r, r + 1), slice(c, min(c + per_chunk, cols))


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
        windows/tokens are computed (gather -> compute -> scatter), image by image over chunks of windows, so that
        besides ``x`` only chunk-sized temporaries are allocated, whatever the image size.

        The map stays row-major (the memory of AdaM's channels-last feature map), so the confidence estimator and
        the output convolution read it without a copy; each chunk is copied to window-major order and back, in the
        CPU caches. In place is exact: the prototypes first read every kept token of the image (Eqs. 10-11); after
        that, a chunk's local and global updates and its MLP read only the chunk's own tokens, which no other chunk
        writes.

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
        chunk_tokens = INFERENCE_CHUNK_TOKENS if x.device.type == 'cpu' else CHUNK_TOKENS
        bias = self.local_attn.position_bias()
        macs = 0
        for i in range(b):
            image = x[i]  # (H, W, D) view
            keep = None if global_keep is None else global_keep[i]
            flat_keep = None if keep is None else keep.reshape(-1)
            prototypes = self.global_attn.gather_prototypes(
                self._kept_tokens(image.view(-1, d), flat_keep, chunk_tokens))  # Eqs. 10-11, before any update
            read = self.global_attn.fold_read(prototypes)  # Eqs. 12-13 as two GEMMs per chunk
            kept_tokens = h * w if flat_keep is None else int(flat_keep.sum())
            if kept_tokens:
                macs += self.global_attn.macs(kept_tokens, 1)
            # chunks hold about chunk_tokens *computed* tokens: with a fraction f of the windows still open, 1/f
            # times as many windows (at most 8x), so the per-chunk bookkeeping does not grow as tokens halt
            open_fraction = 1.0 if keep is None else max(float(local_keep[i].float().mean()), kept_tokens / (h * w))
            per_chunk = int(chunk_tokens / max(open_fraction, 1 / 8)) // n
            for rows, cols in window_chunks(h // s, w // s, max(1, per_chunk)):
                pixels = slice(rows.start * s, rows.stop * s), slice(cols.start * s, cols.stop * s)
                local_i = global_i = None
                if keep is not None:
                    local_i = local_keep[i, rows, cols].reshape(-1)
                    global_i = window_grid(keep[pixels][..., None], s).transpose(1, 2).reshape(-1, n)
                    if not (local_i.any() or global_i.any()):
                        continue  # every token of the chunk is frozen
                grid = window_grid(image[pixels], s)  # (h', S, w', S, D) view
                # window-major copy of the chunk; a view of the map itself when the map is one window wide
                windows = grid.transpose(1, 2).reshape(-1, n, d)
                macs += self._update_chunk(windows, local_i, global_i, read, bias)
                if windows.untyped_storage().data_ptr() != x.untyped_storage().data_ptr():
                    grid.copy_(windows.view(grid.shape[0], grid.shape[2], s, s, d).transpose(1, 2))
        return x, macs

    def _kept_tokens(self, tokens: Tensor, keep: Optional[Tensor], chunk: int) -> Iterator[Tensor]:
        """(T, D) tokens of one image, optional (T,) bool keep mask -> the normalised kept tokens, chunk by chunk."""
        for start in range(0, tokens.shape[0], chunk):
            part = tokens[start:start + chunk]
            if keep is not None:
                part = part[keep[start:start + chunk]]
            if part.shape[0]:
                yield self.norm1(part)

    def _update_chunk(self, windows: Tensor, local_keep: Optional[Tensor], global_keep: Optional[Tensor],
                      read: Tuple[Tensor, ...], bias: Tensor) -> int:
        """One chunk of one image, in place: (K, S*S, D) window tokens, (K,) and (K, S*S) keep masks (None = all),
        the image's folded read-back (``PrototypeAttention.fold_read``). Returns the MACs of its local branch and
        MLP."""
        k, n, d = windows.shape
        tokens = windows.view(k * n, d)
        if local_keep is None:
            normed = self.norm1(windows)
            loc = self.local_attn(normed, bias)
            glob = self.global_attn.read_tokens(normed.view(k * n, d), read)
            windows += loc
            tokens += glob
            tokens += self.mlp(self.norm2(tokens))
            return self.local_attn.macs(k) + self.mlp.macs(k * n)

        win_idx = local_keep.nonzero().squeeze(1)
        tok_idx = global_keep.reshape(-1).nonzero().squeeze(1)
        mlp_idx = (local_keep[:, None] | global_keep).reshape(-1).nonzero().squeeze(1)
        # gathered with their counts rounded up (token_linear then pads nothing); both branches read the block
        # input: compute them before writing either
        loc = glob = None
        if win_idx.numel():
            kept = windows.index_select(0, bucketed(win_idx, max(1, ROW_BUCKET // n)))
            loc = self.local_attn(self.norm1(kept), bias)[:win_idx.numel()]
        if tok_idx.numel():
            kept = tokens.index_select(0, bucketed(tok_idx, ROW_BUCKET))
            glob = self.global_attn.read_tokens(self.norm1(kept), read)[:tok_idx.numel()]
        if loc is not None:
            windows.index_add_(0, win_idx, loc)
        if glob is not None:
            tokens.index_add_(0, tok_idx, glob)
        if mlp_idx.numel():
            kept = tokens.index_select(0, bucketed(mlp_idx, ROW_BUCKET))
            tokens.index_add_(0, mlp_idx, self.mlp(self.norm2(kept))[:mlp_idx.numel()])
        return self.local_attn.macs(win_idx.numel()) + self.mlp.macs(mlp_idx.numel())
