"""Global branch of a TSAB: learned prototypes gather global context from the kept tokens (Eqs. 10-11), then the
tokens read it back from the updated prototypes (Eqs. 12-13). Its cost is linear in the number of tokens.
"""
from typing import Iterable, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .chunking import CHUNK_TOKENS, chunked
from .token_linear import token_linear

LOG2_E = 1.4426950408889634  # exp(x) = 2^(x log2 e): exp2 runs about twice as fast on the CPU


class PrototypeAttention(nn.Module):
    """Two cross-attentions through M learned prototypes.

    ``P' = P + Attn(q=P, k=X, v=X)`` over the kept tokens X of an image, then ``Y = Attn(q=X, k=P', v=P')``.

    The prototypes start at 1 as in the paper plus a 0.02-std perturbation: M exactly equal rows receive equal
    gradients and would stay equal forever, i.e. behave like a single prototype.

    Args:
        dim: token width D.
        num_prototypes: M.
        num_heads: number of heads.
    """

    def __init__(self, dim: int, num_prototypes: int, num_heads: int) -> None:
        super().__init__()
        self.dim = dim
        self.num_heads = num_heads
        self.num_prototypes = num_prototypes
        self.prototypes = nn.Parameter(torch.ones(num_prototypes, dim))
        with torch.no_grad():
            self.prototypes.add_(torch.randn(num_prototypes, dim) * 0.02)
        self.proto_q = nn.Linear(dim, dim)  # Eq. 10: queries from the prototypes
        self.token_qkv = nn.Linear(dim, 3 * dim)  # keys/values of the tokens (Eq. 10), their queries (Eq. 12)
        self.proto_kv = nn.Linear(dim, 2 * dim)  # Eq. 12: keys/values from the updated prototypes
        self.proj = nn.Linear(dim, dim)
        self.head_scale = (dim // num_heads)**-0.5

    def _heads(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, heads, N, D/heads)."""
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def _merge(self, x: Tensor) -> Tensor:
        """(B, heads, N, D/heads) -> (B, N, D)."""
        b, _, n, _ = x.shape
        return x.transpose(1, 2).reshape(b, n, self.dim)

    def update_prototypes(self, qkv: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """Eqs. 10-11. (B, N, 3D) projected tokens, optional (B, N) bool mask of kept tokens -> (B, M, D).

        An image whose mask keeps no token gets ``P`` unchanged (nothing would read it anyway).
        """
        b = qkv.shape[0]
        q = self._heads(self.proto_q(self.prototypes).expand(b, -1, -1))
        k, v = self._heads(qkv[..., self.dim:2 * self.dim]), self._heads(qkv[..., 2 * self.dim:])
        mask = None
        if key_mask is not None:
            empty = ~key_mask.any(dim=1)
            mask = (key_mask | empty[:, None])[:, None, None, :]  # (B, 1, 1, N); avoid all -inf rows
        gathered = self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        if key_mask is not None:
            gathered = gathered * (~empty).to(gathered.dtype)[:, None, None]
        return self.prototypes + gathered

    def read(self, q: Tensor, prototypes: Tensor) -> Tensor:
        """Eqs. 12-13. (B, N, D) token queries, (B, M, D) updated prototypes -> (B, N, D)."""
        k, v = self.proto_kv(prototypes).chunk(2, dim=-1)
        return self.proj(self._merge(F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v))))

    def forward(self, tokens: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """(B, N, D) normalised tokens, optional (B, N) kept-token mask -> (B, N, D) global context per token."""
        qkv = self.token_qkv(tokens)  # (B, N, 3D): query (Eq. 12), key and value (Eq. 10) of every token
        prototypes = self.update_prototypes(qkv, key_mask)
        return chunked(lambda part: self.read(part[..., :self.dim], prototypes), qkv, CHUNK_TOKENS, dim=1)

    # Inference path: one image at a time, its kept tokens given in chunks, so that nothing of the size of the image
    # is allocated (TSAB.forward_inference).

    def _block_diagonal(self, x: Tensor) -> Tensor:
        """(M, D) prototype-side rows -> (D, heads*M): the D/heads columns of head h, transposed, in rows
        h*D/heads.. and columns h*M.., zeros elsewhere; so one GEMM with (n, D) tokens gives every head's products
        without splitting the tokens into heads."""
        dh = self.dim // self.num_heads
        return torch.block_diag(*[x[:, h * dh:(h + 1) * dh].t() for h in range(self.num_heads)])

    @torch.no_grad()
    def gather_prototypes(self, chunks: Iterable[Tensor]) -> Tensor:
        """Eqs. 10-11 over the kept tokens of one image, given as chunks of (n_i, D) normalised tokens -> (M, D).

        The softmax over all kept tokens is accumulated chunk by chunk with a running maximum and sum, so the result
        is the single attention over all of them (up to float rounding) without holding their keys at once. The key
        and value projections are folded into the prototype side: with the scaled queries of all heads laid out
        block-diagonally, ``Q_bd`` (D, heads*M), the logits of every head are ``X (W_k^T Q_bd) + b_k Q_bd``, one GEMM
        on the normalised tokens X, and the attention-weighted values are ``W_v (sum_t a_t x_t) + b_v``; so no
        per-token keys or values are materialised or split into heads. No chunk (no kept token): ``P`` unchanged,
        as :meth:`update_prototypes`.
        """
        d, m, heads = self.dim, self.num_prototypes, self.num_heads
        dh = d // heads
        w_k, w_v = self.token_qkv.weight[d:2 * d], self.token_qkv.weight[2 * d:]
        b_k, b_v = self.token_qkv.bias[d:2 * d], self.token_qkv.bias[2 * d:]
        q = self.proto_q(self.prototypes) * self.head_scale  # (M, D)
        q_bd = self._block_diagonal(q)  # (D, heads*M)
        # a linear layer (heads*M, D), (heads*M,), giving logits in base 2
        logit_weight, logit_bias = (q_bd.t() @ w_k) * LOG2_E, (b_k @ q_bd) * LOG2_E
        peak = total = acc = None
        for tokens in chunks:
            logits = token_linear(tokens, logit_weight, logit_bias)  # (n_i, heads*M)
            new_peak = logits.amax(dim=0)
            if peak is not None:
                new_peak = torch.maximum(new_peak, peak)
            weights = logits.sub_(new_peak).exp2_()
            # sums over every kept token of the image (millions at 8K) are kept in float32 in any precision; in
            # float16 (largest value 65,504) already a chunk's product could overflow, so it is taken in float32 too,
            # and so is a bfloat16 one on a GPU (for its precision; its cost there was not measured: no GPU here); on
            # the CPU a bfloat16 chunk's product stays bfloat16 (the range is float32's, and a float32 product
            # tripled its time)
            chunk_total = weights.sum(dim=0, dtype=torch.float32)
            product_in_float32 = tokens.dtype == torch.float16 or (tokens.dtype == torch.bfloat16 and
                                                                   tokens.device.type != 'cpu')
            chunk_acc = (weights.t().float() @ tokens.float() if product_in_float32
                         else (weights.t() @ tokens).float())
            if peak is None:
                total, acc = chunk_total, chunk_acc  # (heads*M,), (heads*M, D)
            else:
                rescale = torch.exp2(peak - new_peak).float()
                total = total * rescale + chunk_total
                acc = acc * rescale[:, None] + chunk_acc
            peak = new_peak
        if acc is None:
            return self.prototypes
        values = F.linear((acc / total[:, None]).to(w_v.dtype), w_v, b_v)  # (heads*M, D): attention-weighted values
        per_head = [values[h * m:(h + 1) * m, h * dh:(h + 1) * dh] for h in range(heads)]  # head h: (M, D/heads)
        return self.prototypes + torch.cat(per_head, dim=1)

    @torch.no_grad()
    def fold_read(self, prototypes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Eqs. 12-13 for one image, folded into two GEMMs per token chunk, from its (M, D) updated prototypes.

        With the prototype keys of all heads laid out block-diagonally, ``K_bd`` (D, heads*M) scaled, and their
        values ``V_bd`` (heads*M, D), the read-back is ``softmax_per_head(X (W_q^T K_bd) + b_q K_bd) (V_bd W_p^T) +
        b_p`` on the normalised tokens X: no per-token queries, no head split or merge.

        Returns:
            the two linear layers as (weight, bias, weight, bias): logits (heads*M, D), (heads*M,); output
            (D, heads*M), (D,).
        """
        d = self.dim
        k, v = self.proto_kv(prototypes).chunk(2, dim=-1)  # (M, D) each
        k_bd = self._block_diagonal(k) * self.head_scale  # (D, heads*M)
        v_bd_t = self._block_diagonal(v)  # (D, heads*M): V_bd transposed
        w_q, b_q = self.token_qkv.weight[:d], self.token_qkv.bias[:d]
        return k_bd.t() @ w_q, b_q @ k_bd, self.proj.weight @ v_bd_t, self.proj.bias

    @torch.no_grad()
    def read_tokens(self, tokens: Tensor, folded: Tuple[Tensor, Tensor, Tensor, Tensor]) -> Tensor:
        """Eqs. 12-13 for one chunk of one image: (n, D) normalised tokens, :meth:`fold_read` of its prototypes ->
        (n, D)."""
        logit_weight, logit_bias, out_weight, out_bias = folded
        logits = token_linear(tokens, logit_weight, logit_bias)  # (n, heads*M)
        per_head = logits.view(tokens.shape[0], self.num_heads, self.num_prototypes)
        torch.softmax(per_head, dim=-1, out=per_head)
        return token_linear(logits, out_weight, out_bias)

    def macs(self, num_tokens: int, num_images: int) -> int:
        """MACs of :meth:`forward` over ``num_tokens`` tokens in ``num_images`` separate calls/images."""
        return self.gather_macs(num_tokens, num_images) + self.read_macs(num_tokens)

    def gather_macs(self, num_tokens: int, num_images: int) -> int:
        """MACs of Eqs. 10-11 over ``num_tokens`` kept tokens in ``num_images`` images (the keys/values of the tokens,
        the prototypes' attention over them) plus the per-image work on the M prototypes (their queries, and the
        keys/values that Eqs. 12-13 read)."""
        d, m = self.dim, self.num_prototypes
        return num_images * 3 * m * d * d + num_tokens * (2 * d * d + 2 * m * d)

    def read_macs(self, num_tokens: int) -> int:
        """MACs of Eqs. 12-13 for ``num_tokens`` tokens: their queries, their attention over the prototypes, the
        output projection."""
        d, m = self.dim, self.num_prototypes
        return num_tokens * (d * d + 2 * m * d + d * d)
