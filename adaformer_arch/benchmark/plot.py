"""Charts drawn with OpenCV (matplotlib is not a dependency): grouped bars and labelled point series."""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (0, 0, 0), (110, 110, 110), (225, 225, 225)
# BGR, a colour-blind friendly qualitative palette (Okabe-Ito, then extras)
PALETTE = [(178, 114, 0), (0, 159, 230), (115, 158, 0), (0, 94, 213), (167, 121, 204), (233, 180, 86),
           (66, 228, 240), (0, 0, 0), (128, 128, 128), (40, 40, 160)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: Tuple[int, int], scale: float = 0.45, color=BLACK, anchor: str = 'left',
          thickness: int = 1) -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if anchor == 'center':
        x -= w // 2
    elif anchor == 'right':
        x -= w
    cv2.putText(img, text, (int(x), int(y + h // 2)), FONT, scale, color, thickness, cv2.LINE_AA)


def _fmt(v: float) -> str:
    if v == 0:
        return '0'
    if abs(v) >= 100 or float(v).is_integer():
        return f'{v:.0f}'
    return f'{v:.3g}'


class Axes:
    """Maps data to pixels inside a plot rectangle; ``log`` axes are base 10."""

    def __init__(self, rect: Tuple[int, int, int, int], x_range: Tuple[float, float], y_range: Tuple[float, float],
                 x_log: bool = False, y_log: bool = False) -> None:
        self.left, self.top, self.right, self.bottom = rect
        self.x_log, self.y_log = x_log, y_log
        self.x0, self.x1 = self._span(x_range, x_log)
        self.y0, self.y1 = self._span(y_range, y_log)

    @staticmethod
    def _span(rng: Tuple[float, float], log: bool) -> Tuple[float, float]:
        lo, hi = (math.log10(v) for v in rng) if log else rng
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        return lo, hi

    def x(self, v: float) -> int:
        v = math.log10(v) if self.x_log else v
        return int(round(self.left + (v - self.x0) / (self.x1 - self.x0) * (self.right - self.left)))

    def y(self, v: float) -> int:
        v = math.log10(v) if self.y_log else v
        return int(round(self.bottom - (v - self.y0) / (self.y1 - self.y0) * (self.bottom - self.top)))


def ticks(lo: float, hi: float, log: bool) -> List[float]:
    """Tick values covering [lo, hi]: 1-2-5 steps (linear) or 1, 2, 5 x 10^k (log)."""
    if log:
        values = []
        for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            values += [m * 10.0**k for m in (1, 2, 5)]
        inside = [v for v in values if lo <= v <= hi]
        return inside if len(inside) <= 12 else [v for v in inside if math.log10(v).is_integer()]
    raw = (hi - lo) / 6 or 1.0
    mag = 10.0**math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=10 * mag)
    return [i * step for i in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _frame(img: np.ndarray, ax: Axes, title: str, xlabel: str, ylabel: str, y_ticks: Sequence[float]) -> None:
    for v in y_ticks:
        y = ax.y(v)
        cv2.line(img, (ax.left, y), (ax.right, y), LIGHT, 1)
        _text(img, _fmt(v), (ax.left - 6, y), anchor='right', color=GREY)
    cv2.rectangle(img, (ax.left, ax.top), (ax.right, ax.bottom), GREY, 1)
    _text(img, title, ((ax.left + ax.right) // 2, 22), scale=0.6, anchor='center', thickness=2)
    _text(img, xlabel, ((ax.left + ax.right) // 2, ax.bottom + 44), anchor='center')
    label = np.full((24, 400), 255, np.uint8)
    _text(label, ylabel, (200, 12), anchor='center')
    rotated = cv2.rotate(label, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = max(0, (ax.top + ax.bottom) // 2 - 200)
    region = img[y0:y0 + rotated.shape[0], 4:4 + rotated.shape[1]]
    region[:] = np.minimum(region, rotated[:region.shape[0], :region.shape[1], None])


def _legend(img: np.ndarray, labels: Sequence[str], x: int, y: int) -> None:
    for i, label in enumerate(labels):
        color = PALETTE[i % len(PALETTE)]
        cv2.rectangle(img, (x, y + 22 * i - 6), (x + 14, y + 22 * i + 6), color, -1)
        _text(img, label, (x + 20, y + 22 * i))


def bar_chart(groups: Sequence[str], series: Sequence[str], values: Dict[Tuple[str, str], Optional[float]],
              title: str, xlabel: str, ylabel: str, log: bool = True) -> np.ndarray:
    """Grouped bars: one group per ``groups`` entry, one bar per ``series`` entry; ``values[(series, group)]``
    (missing or None: no bar). Returns a BGR uint8 image."""
    legend_w = 20 + max([cv2.getTextSize(s, FONT, 0.45, 1)[0][0] for s in series] + [60])
    width = max(900, 140 + len(groups) * (len(series) * 22 + 40) + legend_w)
    img = np.full((560, width, 3), 255, np.uint8)
    present = [v for v in values.values() if v is not None and v > 0]
    if not present:
        present = [1.0]
    lo, hi = min(present), max(present)
    y_range = (10**math.floor(math.log10(lo)), 10**math.ceil(math.log10(hi * 1.05))) if log else (0, hi * 1.1)
    ax = Axes((80, 40, width - legend_w - 30, 480), (0, 1), y_range, y_log=log)
    _frame(img, ax, title, xlabel, ylabel, ticks(*y_range, log))
    group_w = (ax.right - ax.left) / max(1, len(groups))
    bar_w = max(3, int(group_w * 0.8 / max(1, len(series))))
    for g, group in enumerate(groups):
        start = ax.left + g * group_w + group_w * 0.1
        for s, name in enumerate(series):
            v = values.get((name, group))
            if v is None or v <= 0:
                continue
            x0 = int(start + s * bar_w)
            y = min(ax.bottom - 1, ax.y(v))
            cv2.rectangle(img, (x0, y), (x0 + bar_w - 2, ax.bottom - 1), PALETTE[s % len(PALETTE)], -1)
            if bar_w >= 16:
                _text(img, _fmt(v), (x0 + bar_w // 2, y - 8), scale=0.33, anchor='center')
        _text(img, group, (int(ax.left + (g + 0.5) * group_w), ax.bottom + 16), anchor='center')
    _legend(img, series, ax.right + 16, ax.top + 10)
    return img


def point_chart(series: Sequence[Tuple[str, Sequence[Tuple[float, float, str]], bool]], title: str, xlabel: str,
                ylabel: str) -> np.ndarray:
    """Labelled points: each series is (name, [(x, y, point label)], connect the points with a line)."""
    points = [(x, y) for _, pts, _ in series for x, y, _ in pts]
    xs, ys = [p[0] for p in points] or [0.0, 1.0], [p[1] for p in points] or [0.0, 1.0]
    pad_x, pad_y = (max(xs) - min(xs)) * 0.08 or 1.0, (max(ys) - min(ys)) * 0.1 or 0.5
    legend_w = 20 + max([cv2.getTextSize(n, FONT, 0.45, 1)[0][0] for n, _, _ in series] + [60])
    img = np.full((560, 900 + 16 + legend_w + 10, 3), 255, np.uint8)
    x_range, y_range = (max(0.0, min(xs) - pad_x), max(xs) + pad_x), (min(ys) - pad_y, max(ys) + pad_y)
    ax = Axes((80, 40, 900, 480), x_range, y_range)
    _frame(img, ax, title, xlabel, ylabel, ticks(*y_range, False))
    for v in ticks(*x_range, False):
        _text(img, _fmt(v), (ax.x(v), ax.bottom + 16), anchor='center', color=GREY)
    for s, (_, pts, connect) in enumerate(series):
        color = PALETTE[s % len(PALETTE)]
        pixels = [(ax.x(x), ax.y(y)) for x, y, _ in pts]
        if connect and len(pixels) > 1:
            cv2.polylines(img, [np.array(pixels, np.int32)], False, color, 2, cv2.LINE_AA)
        for (px, py), (_, _, label) in zip(pixels, pts):
            cv2.circle(img, (px, py), 5, color, -1, cv2.LINE_AA)
            if label:
                _text(img, label, (px + 8, py - 10), scale=0.38, color=color)
    _legend(img, [name for name, _, _ in series], ax.right + 16, ax.top + 10)
    return img


def encode_png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode('.png', img)
    if not ok:
        raise RuntimeError('could not encode the chart as PNG')
    return buf.tobytes()
