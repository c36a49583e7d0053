"""Pictures of where AdaFormer halts: the halting depth (paper Fig. 1) and the confidence (Fig. 6)."""
from typing import Dict, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor


def halting_depth(global_halted: Sequence[Tensor]) -> Tensor:
    """L bool maps (B, 1, h, w), True = skipped in that block -> (B, 1, h, w) number of blocks that computed it."""
    return sum((~m).int() for m in global_halted)


def window_to_pixels(window_map: Tensor, window_size: int) -> Tensor:
    """(B, 1, h / S, w / S) one value per attention window -> (B, 1, h, w), each value over its window's pixels."""
    return window_map.repeat_interleave(window_size, dim=-2).repeat_interleave(window_size, dim=-1)


def halting_maps(aux: Dict, height: int, width: int) -> Dict[str, Tensor]:
    """AdaFormer's ``aux`` -> {'depth': (B, 1, height, width) float, the blocks that computed each token;
    'confidence': (B, 1, height, width), its confidence averaged over the blocks}, cropped to the unpadded LR size."""
    return {'depth': halting_depth(aux['global_halted'])[..., :height, :width].float(),
            'confidence': torch.stack(aux['confidences']).mean(0)[..., :height, :width]}


def depth_to_png(depth: np.ndarray, num_blocks: int) -> np.ndarray:
    """(h, w) block counts in [1, L] (any numeric dtype) -> (h, w, 3) uint8 BGR colour map (dark = halted early,
    bright = computed deep)."""
    grey = np.clip(depth.astype(np.float32) / max(num_blocks, 1) * 255.0, 0, 255).astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_VIRIDIS)


def confidence_to_png(confidence: np.ndarray) -> np.ndarray:
    """(h, w) floats in [0, 1] -> (h, w, 3) uint8 BGR colour map."""
    grey = np.clip(confidence * 255.0, 0, 255).round().astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)
