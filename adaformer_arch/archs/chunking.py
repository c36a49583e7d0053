"""Run token-wise work in slices so that temporaries stay small whatever the image size."""
from typing import Callable

import torch
from torch import Tensor

CHUNK_TOKENS = 64 * 1024  # bounds the temporaries of one step to a few tens of MB


def chunked(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int, dim: int = 0) -> Tensor:
    """Apply ``fn`` to slices of ``x`` of at most ``chunk`` entries along ``dim`` and concatenate the results."""
    if x.shape[dim] <= chunk:
        return fn(x)
    return torch.cat([fn(part) for part in x.split(chunk, dim=dim)], dim=dim)


def bucketed(index: Tensor, multiple: int) -> Tensor:
    """(n, ...) gather index -> the same, its last row repeated up to a multiple of ``multiple`` rows (n >= 1):
    gathered sets then come in a few sizes, which oneDNN compiles a kernel for once (see ``token_linear``)."""
    pad = -index.shape[0] % multiple
    return torch.cat([index, index[-1:].expand(pad, *index.shape[1:])]) if pad else index
