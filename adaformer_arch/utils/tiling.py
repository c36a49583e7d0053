"""Super-resolving a large image tile by tile with bounded memory, and stitching the tiles back seamlessly.

Tiles of ``tile`` x ``tile`` LR pixels overlap by ``overlap`` pixels. Every LR pixel is taken from exactly one tile:
within an overlap the cut lies in its middle, so each kept pixel has at least about ``overlap / 2`` pixels of
context on every side that is not an image border (the stitch crops the overlaps; nothing is averaged). Tile
starts are multiples of ``tile - overlap``: when both are multiples of the attention window, the windows of every
tile coincide with those of the whole image.
"""
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor

# forward(lq tile (B, C, h, w)) -> (sr (B, C', h*s, w*s), maps {name: (B, k, h, w)} on the LR grid)
TileForward = Callable[[Tensor], Tuple[Tensor, Dict[str, Tensor]]]


@dataclass(frozen=True)
class Span:
    """One tile along one axis: input ``[start, stop)``, of which ``[keep_start, keep_stop)`` is kept (absolute)."""
    start: int
    stop: int
    keep_start: int
    keep_stop: int


def spans(length: int, tile: int, overlap: int) -> List[Span]:
    """Tiles covering ``[0, length)``: starts 0, s, 2s, ... (s = tile - overlap); the last tile may be shorter (it
    ends at ``length`` and is still longer than ``overlap``)."""
    if not 0 <= overlap < tile:
        raise ValueError(f'overlap must be in [0, tile), got overlap={overlap}, tile={tile}')
    starts = [0]
    while starts[-1] + tile < length:
        starts.append(starts[-1] + tile - overlap)
    stops = [min(start + tile, length) for start in starts]
    cuts = [0] + [(nxt + stop) // 2 for nxt, stop in zip(starts[1:], stops[:-1])] + [length]
    return [Span(a, b, cuts[i], cuts[i + 1]) for i, (a, b) in enumerate(zip(starts, stops))]


def tiles(height: int, width: int, tile: int, overlap: int) -> Iterator[Tuple[Span, Span]]:
    """(row span, column span) of every tile, row-major."""
    for row in spans(height, tile, overlap):
        for col in spans(width, tile, overlap):
            yield row, col


def tile_count(height: int, width: int, tile: int, overlap: int) -> int:
    return len(spans(height, tile, overlap)) * len(spans(width, tile, overlap))


def run_tiled(forward: TileForward, lq: Tensor, scale: int, tile: int, overlap: int, device: torch.device,
              progress: Optional[Callable[[], None]] = None) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Apply ``forward`` to the tiles of ``lq`` (B, C, H, W) (kept on the CPU; each tile goes to ``device``) and
    stitch -> (sr (B, C', H*s, W*s), maps {name: (B, k, H, W)}), both on the CPU. ``progress()`` is called after
    each tile."""
    b, _, height, width = lq.shape
    sr_canvas: Optional[Tensor] = None
    map_canvases: Dict[str, Tensor] = {}
    for row, col in tiles(height, width, tile, overlap):
        sr, maps = forward(lq[:, :, row.start:row.stop, col.start:col.stop].to(device))
        if sr_canvas is None:
            sr_canvas = torch.empty(b, sr.shape[1], height * scale, width * scale, dtype=sr.dtype)
            map_canvases = {k: torch.empty(b, v.shape[1], height, width, dtype=v.dtype) for k, v in maps.items()}
        r0, r1, c0, c1 = row.keep_start - row.start, row.keep_stop - row.start, \
            col.keep_start - col.start, col.keep_stop - col.start
        sr_canvas[:, :, row.keep_start * scale:row.keep_stop * scale, col.keep_start * scale:col.keep_stop * scale] = \
            sr[:, :, r0 * scale:r1 * scale, c0 * scale:c1 * scale].cpu()
        for name, value in maps.items():
            map_canvases[name][:, :, row.keep_start:row.keep_stop, col.keep_start:col.keep_stop] = \
                value[:, :, r0:r1, c0:c1].cpu()
        if progress is not None:
            progress()
    return sr_canvas, map_canvases
