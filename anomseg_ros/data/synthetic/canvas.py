"""An image and its label map drawn together, shape by shape, far to near."""
from typing import Sequence, Tuple

import cv2
import numpy as np

Color = Tuple[int, int, int]


class Canvas:
    """RGB image and trainId label map of one scene; every draw call paints both."""

    def __init__(self, width: int, height: int, rng: np.random.Generator):
        self.image = np.zeros((height, width, 3), np.uint8)
        self.label = np.zeros((height, width), np.uint8)
        self.rng = rng
        self.width, self.height = width, height

    def polygon(self, points: Sequence[Tuple[float, float]], color, label: int) -> None:
        pts = np.round(np.asarray(points, np.float64) * 8).astype(np.int32)[None]
        cv2.fillPoly(self.image, pts, _bgr(color), cv2.LINE_AA, shift=3)
        cv2.fillPoly(self.label, pts, int(label), cv2.LINE_8, shift=3)

    def ellipse(self, center, axes, color, label: int, angle: float = 0.0) -> None:
        c = (int(round(center[0] * 8)), int(round(center[1] * 8)))
        a = (max(1, int(round(axes[0] * 8))), max(1, int(round(axes[1] * 8))))
        cv2.ellipse(self.image, c, a, angle, 0, 360, _bgr(color), -1, cv2.LINE_AA, shift=3)
        cv2.ellipse(self.label, c, a, angle, 0, 360, int(label), -1, cv2.LINE_8, shift=3)

    def rect(self, x0, y0, x1, y1, color, label: int) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, label)

    def line(self, p0, p1, color, label: int, thickness: float) -> None:
        t = max(1, int(round(thickness)))
        a = (int(round(p0[0])), int(round(p0[1])))
        b = (int(round(p1[0])), int(round(p1[1])))
        cv2.line(self.image, a, b, _bgr(color), t, cv2.LINE_AA)
        cv2.line(self.label, a, b, int(label), t, cv2.LINE_8)

    def paint(self, points, color) -> None:
        """Paint on the image only (markings, windows, shadows keep the label underneath)."""
        pts = np.round(np.asarray(points, np.float64) * 8).astype(np.int32)[None]
        cv2.fillPoly(self.image, pts, _bgr(color), cv2.LINE_AA, shift=3)

    def stroke(self, points, color, thickness: float = 1.0) -> None:
        """A polyline on the image only (a wire in front of whatever is there)."""
        pts = np.round(np.asarray(points, np.float64) * 8).astype(np.int32)[None]
        cv2.polylines(self.image, pts, False, _bgr(color), max(1, int(round(thickness))),
                      cv2.LINE_AA, shift=3)


def _bgr(color) -> Tuple[int, int, int]:
    # the canvas is RGB; OpenCV only sees numbers, so colours pass through unchanged
    return tuple(int(np.clip(c, 0, 255)) for c in color)


def jitter(rng: np.random.Generator, color: Color, amount: float = 20.0) -> Color:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def shade(color: Color, factor: float) -> Color:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in color)
