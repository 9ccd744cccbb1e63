"""A few small procedural road scenes with an obstacle on the road, so the demo needs no files."""
from typing import List

import cv2
import numpy as np


def demo_scene(seed: int, *, size_wh=(1024, 512)) -> np.ndarray:
    """A road in perspective under a sky, a building band, lane marks and one odd object."""
    rng = np.random.default_rng(seed)
    width, height = size_wh
    horizon = int(height * rng.uniform(0.38, 0.48))
    image = np.zeros((height, width, 3), np.uint8)
    sky_top, sky_bottom = np.array([70, 130, 200]), np.array([170, 200, 230])
    ramp = np.linspace(0, 1, horizon)[:, None, None]
    image[:horizon] = (sky_top * (1 - ramp) + sky_bottom * ramp).astype(np.uint8)
    image[horizon:] = (107, 142, 35)  # verge
    building = rng.integers(90, 160, 3)
    cv2.rectangle(image, (0, int(horizon * 0.45)), (width, horizon), building.tolist(), -1)
    vanish_x = int(width * rng.uniform(0.4, 0.6))
    road = np.array([[vanish_x - 8, horizon], [vanish_x + 8, horizon],
                     [int(width * 1.05), height], [int(-width * 0.05), height]], np.int32)
    cv2.fillPoly(image, [road], (90, 90, 95))
    for t0 in np.arange(0.05, 1.0, 0.12):  # dashed centre line
        t1 = t0 + 0.05
        y0, y1 = horizon + t0 ** 2 * (height - horizon), horizon + t1 ** 2 * (height - horizon)
        cv2.line(image, (vanish_x, int(y0)), (vanish_x, int(y1)), (235, 235, 235),
                 max(1, int(6 * t1)))
    depth = rng.uniform(0.35, 0.8)  # the obstacle: an odd coloured blob on the road
    y = int(horizon + depth * (height - horizon))
    radius = max(4, int(40 * depth))
    x = int(vanish_x + rng.uniform(-0.3, 0.3) * depth * width)
    color = rng.integers(0, 256, 3).tolist()
    cv2.ellipse(image, (x, y - radius // 2), (radius, radius // 2 + 2), 0, 0, 360, color, -1)
    noise = rng.normal(0, 4, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def demo_scenes(count: int, **kwargs) -> List[np.ndarray]:
    return [demo_scene(seed, **kwargs) for seed in range(count)]
