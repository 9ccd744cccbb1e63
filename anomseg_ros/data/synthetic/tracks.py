"""Anomaly tracks in the layout of the real benchmarks (labels 0 inlier, 1 anomaly, 255 void).

- ``obstacle``: small unknown objects lying on the road; everything off the road is void, as in
  RoadObstacle21.
- ``anomaly``: large unknown objects anywhere on the ground, as in RoadAnomaly21.
- ``blended``: objects pasted with soft edges into finished scenes, as in Fishyscapes Static;
  the soft rim is void.
"""
from typing import Dict, Iterator, Tuple

import cv2
import numpy as np

from anomseg_ros.data.synthetic import anomalies
from anomseg_ros.data.synthetic.objects import ROAD
from anomseg_ros.data.synthetic.scene import ANOMALY_LABEL, render_scene, VOID

TRACKS = ('obstacle', 'anomaly', 'blended')


def _placed_objects(count, size_range_m, depth_range_m, lateral, *, family='test'):
    """An ``extra`` hook for render_scene that adds anomalies at ground positions."""
    def extra(canvas, cam, street, z_near):
        rng = canvas.rng
        drawables = []
        for _ in range(count):
            z = float(rng.uniform(max(depth_range_m[0], z_near * 1.3), depth_range_m[1]))
            x0, x1 = lateral(street)
            x = float(rng.uniform(x0, x1)) + float(street.bend(z))
            size_px = rng.uniform(*size_range_m) * cam.pixels_per_m(z)
            if size_px < 6:
                continue
            rgb, mask, _, _ = anomalies.sample_object(family, size_px, rng)
            u, v = cam.point(x, 0.0, z)

            def draw(c, k, rgb=rgb, mask=mask, u=u, v=v):
                anomalies.paste(c.image, c.label, rgb, mask, (u, v), ANOMALY_LABEL)
            drawables.append((z, draw))
        return drawables
    return extra


def render_track_sample(track: str, rng: np.random.Generator, width: int = 1024,
                        height: int = 512) -> Tuple[np.ndarray, np.ndarray, Dict]:
    """One benchmark image of ``track``: ``(image RGB, label 0/1/255, info)``; ``info`` has the
    number of anomaly pixels and the scene's trainIds (``semantic``, anomalies void).

    Every image shows anomaly pixels: a scene whose objects ended up hidden (behind a car, say)
    is drawn again with the same generator, up to ten times.
    """
    min_pixels = max(16, width * height // 10000)
    for attempt in range(10):
        image, label, semantic = _render_track(track, rng, width, height)
        if (label == 1).sum() >= min_pixels:
            break
    return image, label, {'anomaly_pixels': int((label == 1).sum()), 'attempts': attempt + 1,
                          'semantic': semantic}


def _render_track(track, rng, width, height):
    if track == 'obstacle':
        extra = _placed_objects(int(rng.integers(1, 4)), (0.3, 1.2), (4.0, 30.0),
                                lambda s: (s.road_left + 0.4, s.road_right - 0.4))
        image, scene_label, _, _ = render_scene(rng, width, height, extra=extra)
        label = np.full(scene_label.shape, 255, np.uint8)
        label[scene_label == ROAD] = 0
        label[scene_label == ANOMALY_LABEL] = 1
    elif track == 'anomaly':
        extra = _placed_objects(int(rng.integers(1, 3)), (1.2, 4.0), (5.0, 30.0),
                                lambda s: (s.road_left - 2.0, s.road_right + 2.0))
        image, scene_label, _, _ = render_scene(rng, width, height, extra=extra)
        label = np.zeros(scene_label.shape, np.uint8)
        label[scene_label == VOID] = 255
        label[scene_label == ANOMALY_LABEL] = 1
    elif track == 'blended':
        image, scene_label, cam, street = render_scene(rng, width, height)
        label = np.zeros(scene_label.shape, np.uint8)
        label[scene_label == VOID] = 255
        for _ in range(int(rng.integers(1, 4))):
            z = float(rng.uniform(max(6.0, cam.depth_of_row(height) * 1.3), 35.0))
            x = float(rng.uniform(street.road_left - 1.5, street.road_right + 1.5) +
                      street.bend(z))
            size_px = rng.uniform(0.5, 2.5) * cam.pixels_per_m(z)
            if size_px < 8:
                continue
            rgb, mask, _, _ = anomalies.sample_object('test', size_px, rng)
            alpha = anomalies.paste(image, scene_label, rgb, mask, cam.point(x, 0.0, z),
                                    ANOMALY_LABEL, feather_px=max(1.0, width / 512))
            label[(alpha > 0) & (alpha < 0.5)] = 255  # the soft rim is neither
            label[alpha >= 0.5] = 1
    else:
        raise ValueError(f'unknown track {track!r}; tracks: {", ".join(TRACKS)}')
    semantic = scene_label.copy()  # the trainIds around the anomalies, which are void
    semantic[(label == 1) | (semantic == ANOMALY_LABEL)] = VOID
    return image, label, semantic


def render_outlier(rng: np.random.Generator, *, min_size: int = 48,
                   max_size: int = 192) -> np.ndarray:
    """One RGBA cut-out of the training outlier family (disjoint from the test anomalies)."""
    size = int(rng.integers(min_size, max_size + 1))
    rgb, mask, _, _ = anomalies.sample_object('outlier', size, rng)
    return np.dstack([rgb, mask * 255]).astype(np.uint8)


def render_approach(track: str, rng: np.random.Generator, *, frames: int = 10,
                    width: int = 1024, height: int = 512, zoom: float = 0.015,
                    noise: float = 4.0) -> Iterator[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A short, temporally coherent sequence: one scene of ``track`` approached over ``frames``
    frames, ``(image RGB, label 0/1/255, semantic trainIds)`` each.

    The camera's forward motion is a zoom by ``(1 + zoom)`` a frame about the middle of the
    lower half (where the road leads), and each frame has fresh sensor noise (``noise``, the
    standard deviation in grey levels) and brightness flicker (1%): the objects stay where they
    were, and what comes and goes from frame to frame is the detector's own noise, as from a
    camera at 10 Hz. Temporal persistence is measured on such sequences (the tracks' scenes
    are unrelated to each other, which would make every object a one-frame blip)."""
    if frames < 1:
        raise ValueError(f'an approach has at least one frame, got {frames}')
    image, label, info = render_track_sample(track, rng, width, height)
    semantic = info['semantic']
    centre = (width / 2.0, height * 0.75)
    for index in range(frames):
        scale = (1.0 + zoom) ** index
        matrix = cv2.getRotationMatrix2D(centre, 0.0, scale)
        moved = cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        frame = moved.astype(np.float32) * (1.0 + rng.normal(0.0, 0.01))
        frame += rng.normal(0.0, noise, frame.shape).astype(np.float32)
        yield (np.clip(frame, 0, 255).astype(np.uint8),
               cv2.warpAffine(label, matrix, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=255),
               cv2.warpAffine(semantic, matrix, (width, height), flags=cv2.INTER_NEAREST,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=255))
