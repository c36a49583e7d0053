"""Token-wise linear layers of the inference path, through oneDNN on the CPU."""
from typing import Optional

import torch
from torch import Tensor
from torch.nn import functional as F

from . import cpu_route

ROW_BUCKET = 256  # token counts are rounded up to a multiple of this (a 4096-token chunk: at most 16 shapes)
# On one thread the tokens go to the convolution as this many images of one row each: PyTorch sends a 1x1 convolution
# of fewer than 16 images on one thread to its slow generic path (a BLAS GEMM, as F.linear) instead of oneDNN. With
# more threads they go as one image, which oneDNN takes anyway (16 images were not faster there).
# scripts/token_linear_routes.py (experiments/token_linear_routes/): one thread, 4096 tokens, 64->192: 0.98 ms as one
# image, 0.45 ms as 16, AdaM at LR 480x270 0.71-0.74x the time; two threads: 0.25 ms either way.
CONV_BATCH = 16
assert ROW_BUCKET % CONV_BATCH == 0, 'padded token counts must split into CONV_BATCH rows of equal length'


def token_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    """(n, C_in) tokens, (C_out, C_in) weight, (C_out,) bias -> (n, C_out) = ``F.linear(x, weight, bias)``.

    On the CPU without autograd the product runs as a 1x1 convolution over a channels-last view of the tokens (no
    copy), which PyTorch hands to oneDNN's JIT kernels instead of the BLAS GEMM behind ``F.linear``. Measured on this
    project's AMD EPYC (AVX-512), 4096 tokens: about 2x faster for the 64->64/128/192 and 128->64 layers of a TSAB,
    on one thread and on two (docs/benchmark.md). On a GPU, with autograd, or for other layouts: ``F.linear``.

    oneDNN builds (JIT-compiles) a kernel for every new input shape and keeps a limited number of them; the
    gathered token sets of the sparse path have a new length almost every call, so the rows are padded with zeros
    to a multiple of ``ROW_BUCKET``: a few shapes per layer, built once, instead of a new kernel per call.
    """
    if not cpu_route.on_cpu_route(x) or x.dim() != 2 or not x.is_contiguous():
        return F.linear(x, weight, bias)
    n, c_in = x.shape
    pad = -n % ROW_BUCKET
    if pad:
        x = torch.cat([x, x.new_zeros(pad, c_in)])
    images = CONV_BATCH if torch.get_num_threads() == 1 else 1
    return as_convolution(x, weight, bias, images)[:n]


def as_convolution(x: Tensor, weight: Tensor, bias: Optional[Tensor], images: int) -> Tensor:
    """(n, C_in) contiguous tokens, n a multiple of ``images``, as ``images`` one-row channels-last images of a 1x1
    convolution -> (n, C_out)."""
    n, c_in = x.shape
    out = F.conv2d(x.view(images, 1, n // images, c_in).permute(0, 3, 1, 2), weight[:, :, None, None], bias)
    return out.permute(0, 2, 3, 1).reshape(n, -1)  # (images, C_out, 1, n/images) -> (n, C_out)
