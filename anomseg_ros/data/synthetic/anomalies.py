"""Anomalous objects: shape and texture families that no inlier class uses.

The test families (for the obstacle, anomaly and blended tracks) and the training outlier family
(for methods with outlier exposure) share no shape and no texture, so a method trained on the
outliers is still tested on unseen kinds of objects.
"""
from typing import Dict, Tuple

import cv2
import numpy as np

TEST_SHAPES = ('blob', 'star', 'animal')
TEST_TEXTURES = ('checker', 'stripes', 'rings')
OUTLIER_SHAPES = ('crate', 'triangle', 'cross')
OUTLIER_TEXTURES = ('dots', 'hue_noise', 'gradient')
FAMILIES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    'test': (TEST_SHAPES, TEST_TEXTURES),
    'outlier': (OUTLIER_SHAPES, OUTLIER_TEXTURES),
}


def _polygon_mask(size: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points * 8).astype(np.int32)], 1, cv2.LINE_8, shift=3)
    return mask


def shape_mask(shape: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A binary ``(size,size)`` mask of one object, its base touching the bottom edge."""
    c, r = size / 2, size * 0.48
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    if shape == 'blob':
        radius = np.ones_like(theta)
        for k in range(2, 6):
            radius += rng.uniform(0, 0.35 / k * 2) * np.sin(k * theta + rng.uniform(0, 6.3))
        radius = radius / radius.max()
        pts = np.stack([c + r * radius * np.cos(theta), c + r * radius * np.sin(theta)], 1)
        return _polygon_mask(size, pts)
    if shape == 'star':
        n = int(rng.integers(5, 10))
        angles = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False) + rng.uniform(0, 1)
        radii = np.where(np.arange(2 * n) % 2 == 0, r, r * rng.uniform(0.35, 0.6))
        return _polygon_mask(size, np.stack([c + radii * np.cos(angles),
                                             c + radii * np.sin(angles)], 1))
    if shape == 'animal':  # a four-legged body with a head and a tail, side view
        mask = np.zeros((size, size), np.uint8)
        body_y = size * 0.45
        cv2.ellipse(mask, (int(c), int(body_y)), (int(r * 0.7), int(r * 0.3)), 0, 0, 360, 1, -1)
        head = (int(c + r * 0.75), int(body_y - r * 0.3))
        cv2.ellipse(mask, head, (int(r * 0.22), int(r * 0.17)), -20, 0, 360, 1, -1)
        cv2.line(mask, (int(c + r * 0.5), int(body_y)), head, 1, max(1, int(r * 0.15)))
        for lx in (-0.5, -0.3, 0.3, 0.5):
            x = int(c + lx * r)
            cv2.line(mask, (x, int(body_y)), (x + int(rng.normal(0, r * 0.05)), size - 1), 1,
                     max(1, int(r * 0.1)))
        cv2.line(mask, (int(c - r * 0.65), int(body_y)),
                 (int(c - r * 0.95), int(body_y - r * rng.uniform(-0.2, 0.4))), 1,
                 max(1, int(r * 0.05)))
        return mask
    if shape == 'crate':
        pts = np.array([[0.05, 0.3], [0.95, 0.3], [0.95, 1.0], [0.05, 1.0]]) * size
        pts[:, 1] -= 1
        return _polygon_mask(size, pts)
    if shape == 'triangle':
        return _polygon_mask(size, np.array([[0.5, 0.02], [0.98, 0.99], [0.02, 0.99]]) * size)
    if shape == 'cross':
        mask = np.zeros((size, size), np.uint8)
        w = int(size * rng.uniform(0.15, 0.3))
        cv2.rectangle(mask, (int(c) - w, 0), (int(c) + w, size - 1), 1, -1)
        cv2.rectangle(mask, (0, int(size * 0.3) - w), (size - 1, int(size * 0.3) + w), 1, -1)
        return mask
    raise ValueError(f'unknown anomaly shape {shape!r}')


def texture(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """An ``(size,size,3)`` uint8 RGB texture of one family."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    if kind == 'checker':
        period = max(2, int(size * rng.uniform(0.06, 0.2)))
        pick = ((xx // period + yy // period) % 2)[..., None]
    elif kind == 'stripes':
        angle, period = rng.uniform(0, np.pi), max(2.0, size * rng.uniform(0.05, 0.15))
        pick = ((np.cos(angle) * xx + np.sin(angle) * yy) // period % 2)[..., None]
    elif kind == 'rings':
        period = max(2.0, size * rng.uniform(0.05, 0.12))
        pick = (np.hypot(xx - size / 2, yy - size / 2) // period % 2)[..., None]
    elif kind == 'dots':
        image = np.empty((size, size, 3), np.uint8)
        image[:] = a
        for _ in range(int(rng.integers(10, 40))):
            center = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.circle(image, center, max(1, int(size * rng.uniform(0.02, 0.08))),
                       tuple(int(v) for v in b), -1)
        return image
    elif kind == 'hue_noise':
        small = rng.integers(0, 180, (max(2, size // 8),) * 2).astype(np.uint8)
        hue = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
        hsv = np.dstack([hue, np.full_like(hue, 230), np.full_like(hue, 220)])
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    elif kind == 'gradient':
        t = (xx / max(size - 1, 1))[..., None]
        return (a * (1 - t) + b * t).astype(np.uint8)
    else:
        raise ValueError(f'unknown anomaly texture {kind!r}')
    return np.where(pick > 0, a, b).astype(np.uint8)


def sample_object(family: str, size: int, rng: np.random.Generator):
    """``(rgb (s,s,3) uint8, mask (s,s) uint8 0/1, shape, texture)`` of one object."""
    shapes, textures = FAMILIES[family]
    shape, kind = str(rng.choice(shapes)), str(rng.choice(textures))
    size = max(int(size), 4)
    return texture(kind, size, rng), shape_mask(shape, size, rng), shape, kind


def paste(image: np.ndarray, label: np.ndarray, rgb: np.ndarray, mask: np.ndarray,
          bottom_center: Tuple[float, float], label_value: int, *,
          feather_px: float = 0.0) -> np.ndarray:
    """Paste an object with its bottom centre at ``bottom_center`` (u, v); returns the alpha
    map over the whole image (soft at the edges when ``feather_px`` > 0)."""
    h, w = label.shape
    size = mask.shape[0]
    x0, y0 = int(round(bottom_center[0] - size / 2)), int(round(bottom_center[1] - size))
    alpha = np.zeros((h, w), np.float32)
    xs, ys = max(x0, 0), max(y0, 0)
    xe, ye = min(x0 + size, w), min(y0 + size, h)
    if xe <= xs or ye <= ys:
        return alpha
    alpha[ys:ye, xs:xe] = mask[ys - y0:ye - y0, xs - x0:xe - x0]
    if feather_px > 0:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather_px)
        alpha[alpha < 1.0 / 255] = 0.0  # below one grey level: leave the pixel untouched
    layer = np.zeros_like(image)
    layer[ys:ye, xs:xe] = rgb[ys - y0:ye - y0, xs - x0:xe - x0]
    if feather_px > 0:  # spread the colours under the soft edge
        layer = cv2.dilate(layer, np.ones((3, 3), np.uint8), iterations=int(feather_px * 2) + 1)
    blended = image * (1 - alpha[..., None]) + layer * alpha[..., None]
    image[:] = np.where(alpha[..., None] > 0, np.rint(blended), image).astype(np.uint8)
    label[alpha >= 0.5] = label_value
    return alpha
