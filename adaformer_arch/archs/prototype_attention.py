"""Global branch of a TSAB: learned prototypes gather global context from the kept tokens (Eqs. 10-11), then the
tokens read it back from the updated prototypes (Eqs. 12-13). Its cost is linear in the number of tokens.
"""
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn import functional as F


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
        self.token_kv = nn.Linear(dim, 2 * dim)  # Eq. 10: keys/values from the tokens
        self.token_q = nn.Linear(dim, dim)  # Eq. 12: queries from the tokens
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

    def update_prototypes(self, tokens: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """Eqs. 10-11. (B, N, D) normalised tokens, optional (B, N) bool mask of kept tokens -> (B, M, D).

        An image whose mask keeps no token gets ``P`` unchanged (nothing would read it anyway).
        """
        b = tokens.shape[0]
        q = self._heads(self.proto_q(self.prototypes).expand(b, -1, -1))
        k, v = self._kv(self.token_kv(tokens))
        mask = None
        if key_mask is not None:
            empty = ~key_mask.any(dim=1)
            mask = (key_mask | empty[:, None])[:, None, None, :]  # (B, 1, 1, N); avoid all -inf rows
        gathered = self._merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
        if key_mask is not None:
            gathered = gathered * (~empty).to(gathered.dtype)[:, None, None]
        return self.prototypes + gathered

    def _kv(self, kv: Tensor) -> tuple:
        """(B, N, 2D) -> two (B, heads, N, D/heads)."""
        k, v = kv.chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def read(self, tokens: Tensor, prototypes: Tensor) -> Tensor:
        """Eqs. 12-13. (B, N, D) normalised tokens, (B, M, D) updated prototypes -> (B, N, D)."""
        q = self._heads(self.token_q(tokens))
        k, v = self._kv(self.proto_kv(prototypes))
        return self.proj(self._merge(F.scaled_dot_product_attention(q, k, v)))

    def forward(self, tokens: Tensor, key_mask: Optional[Tensor] = None) -> Tensor:
        """(B, N, D) normalised tokens, optional (B, N) kept-token mask -> (B, N, D) global context per token."""
        return self.read(tokens, self.update_prototypes(tokens, key_mask))

    def macs(self, num_tokens: int, num_images: int) -> int:
        """MACs of :meth:`forward` over ``num_tokens`` tokens in ``num_images`` separate calls/images."""
        d, m = self.dim, self.num_prototypes
        per_image = m * d * d + 2 * m * d * d  # prototype queries, prototype keys/values
        per_token = 2 * d * d + 2 * m * d + d * d + 2 * m * d + d * d  # kv, P<-X attention, q, X<-P attention, proj
        return num_images * per_image + num_tokens * per_token
