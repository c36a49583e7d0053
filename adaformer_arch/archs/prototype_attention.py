"""Global branch of a TSAB: learned prototypes gather global context from the kept tokens (Eqs. 10-11), then the
tokens read it back from the updated prototypes (Eqs. 12-13). Its cost is linear in the number of tokens.
"""
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .chunking import CHUNK_TOKENS, chunked


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

    def read(self, qkv: Tensor, prototypes: Tensor) -> Tensor:
        """Eqs. 12-13. (B, N, 3D) projected tokens, (B, M, D) updated prototypes -> (B, N, D)."""
        q = self._heads(qkv[..., :self.dim])
        k, v = self.proto_kv(prototypes).chunk(2, dim=-1)
        return self.proj(self._merge(F.scaled_dot_product_attention(q, self._heads(k), self._heads(v))))

    def forward(self, tokens: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """(B, N, D) normalised tokens, optional (B, N) kept-token mask -> (B, N, D) global context per token."""
        qkv = self.token_qkv(tokens)  # (B, N, 3D): query (Eq. 12), key and value (Eq. 10) of every token
        prototypes = self.update_prototypes(qkv, key_mask)
        return chunked(lambda part: self.read(part, prototypes), qkv, CHUNK_TOKENS, dim=1)

    def macs(self, num_tokens: int, num_images: int) -> int:
        """MACs of :meth:`forward` over ``num_tokens`` tokens in ``num_images`` separate calls/images."""
        d, m = self.dim, self.num_prototypes
        per_image = m * d * d + 2 * m * d * d  # prototype queries, prototype keys/values
        per_token = 3 * d * d + 2 * m * d + 2 * m * d + d * d  # qkv, P<-X attention, X<-P attention, proj
        return num_images * per_image + num_tokens * per_token
