"""AdaFormerConvFloor: AdaFormer without its transformer module, the cost floor of early exit in benchmarks."""
from typing import Sequence

import torch
from torch import Tensor, nn

from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer
from basicsr.utils.registry import ARCH_REGISTRY

from .adaformer_arch import channels_last, residual_blocks


@ARCH_REGISTRY.register()
class AdaFormerConvFloor(nn.Module):
    """AdaFormer's head conv, ``num_block`` residual blocks (its encoder + decoder), global skip and pixel-shuffle
    tail, with no AdaM, in AdaFormer's channels-last layout: what AdaFormer would cost if every token halted before
    the first TSAB.

    (B, num_in_ch, h, w) in [0, 1] -> (B, num_out_ch, h*upscale, w*upscale); any h, w.
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_out_ch: int = 3,
                 num_feat: int = 64,
                 num_block: int = 16,
                 upscale: int = 4,
                 img_range: float = 1.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040)) -> None:
        super().__init__()
        if len(rgb_mean) != num_in_ch:
            raise ValueError(f'rgb_mean has {len(rgb_mean)} values but num_in_ch={num_in_ch}')
        self.img_range = img_range
        self.register_buffer('mean', torch.tensor(rgb_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = make_layer(ResidualBlockNoBN, num_block, num_feat=num_feat)
        self.conv_up = nn.Conv2d(num_feat, num_out_ch * upscale**2, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale)

    def forward(self, lq: Tensor) -> Tensor:
        # channels-last, as AdaFormer: the fast memory layout of CPU (oneDNN) and GPU convolutions
        # and the same inference path for the residual blocks and the tail (in place without autograd)
        head = self.conv_first(channels_last((lq - self.mean) * self.img_range))
        feat = residual_blocks(self.body, head).add_(head)
        del head
        out = self.pixel_shuffle(self.conv_up(feat))
        del feat
        return out.div_(self.img_range).add_(self.mean).contiguous()
