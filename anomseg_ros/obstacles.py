"""Obstacles as objects: the connected components of an obstacle mask, with their box, area and
scores, so a planner need not parse an image (ROS-free)."""
import dataclasses
from typing import List

import cv2
import numpy as np

DEFAULT_MIN_AREA = 50  # pixels at the input resolution; smaller specks are noise


@dataclasses.dataclass(frozen=True)
class Obstacle:
    """One 8-connected component of the obstacle mask, in input-image pixels."""

    x: int              # left column of the bounding box
    y: int              # top row
    width: int
    height: int
    area: int           # pixels in the component (not the box)
    centroid_x: float
    centroid_y: float
    mean_score: float   # anomaly score over the component's pixels
    max_score: float


def find_obstacles(mask: np.ndarray, score_map: np.ndarray, *,
                   min_area: int = DEFAULT_MIN_AREA) -> List[Obstacle]:
    """The components of ``mask`` (H,W bool) of at least ``min_area`` pixels, largest first,
    scored with ``score_map`` (H,W float)."""
    count, components, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return []
    inside = mask.ravel().astype(bool)
    index = components.ravel()[inside]
    scores = score_map.ravel()[inside].astype(np.float64)
    sums = np.bincount(index, weights=scores, minlength=count)
    maxima = np.full(count, -np.inf)
    np.maximum.at(maxima, index, scores)
    obstacles = []
    for label in range(1, count):  # 0 is the background
        x, y, width, height, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        obstacles.append(Obstacle(x, y, width, height, area, float(centroids[label][0]),
                                  float(centroids[label][1]), float(sums[label] / area),
                                  float(maxima[label])))
    return sorted(obstacles, key=lambda o: -o.area)
