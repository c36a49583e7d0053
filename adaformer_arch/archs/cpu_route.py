"""Which of the two inference routes a tensor takes.

The CPU route is tuned for oneDNN and the CPU caches: token linears as 1x1 convolutions
(``token_linear.as_convolution``), window attention head by head on strided views
(``window_attention.attention_per_head``), and TSAB pieces of ``tsab.INFERENCE_CHUNK_TOKENS`` tokens. The other
route (a GPU, or any tensor under autograd) uses ``F.linear``, ``F.scaled_dot_product_attention`` and chunks of
``chunking.CHUNK_TOKENS``. The modules ask this one predicate, looked up at call time, so that the tests can send
CPU tensors down the GPU route and check its logic on a machine without a GPU (``tests/test_arch.py``).
"""
import torch
from torch import Tensor


def on_cpu_route(x: Tensor) -> bool:
    """True for a tensor on the CPU while autograd is off: the CPU inference route."""
    return x.device.type == 'cpu' and not torch.is_grad_enabled()
