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


# --- where obstacles count: the drivable region ------------------------------------------------

MASK_REGIONS = ('all', 'drivable')
DRIVABLE_CLASSES = (0,)  # Cityscapes trainId road
DRIVABLE_MARGIN = 8      # pixels the region is widened by


def drivable_region(labels: np.ndarray, classes=DRIVABLE_CLASSES, *,
                    margin: int = DRIVABLE_MARGIN) -> np.ndarray:
    """``(H,W)`` bool: the pixels of ``classes`` in the predicted ``labels`` filled along each
    row, from the row's first such pixel to its last, so that an object standing on the road
    (predicted as something else) is inside; then widened by ``margin`` pixels."""
    road = np.isin(labels, classes)
    width = labels.shape[1]
    first = road.argmax(axis=1)
    last = width - 1 - road[:, ::-1].argmax(axis=1)
    columns = np.arange(width)
    rows = np.asarray(road.any(axis=1))
    region = rows[:, None] & (columns >= first[:, None]) & (columns <= last[:, None])
    if margin:
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        region = cv2.dilate(region.astype(np.uint8), kernel) > 0
    return region


# --- obstacles over time ------------------------------------------------------------------------

def box_iou(a: Obstacle, b: Obstacle) -> float:
    left, top = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.width, b.x + b.width), min(a.y + a.height, b.y + b.height)
    inter = max(0, right - left) * max(0, bottom - top)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union else 0.0


@dataclasses.dataclass
class Track:
    """One obstacle followed over frames: its id, its newest box, and whether it was seen in
    each of the last frames (newest last)."""

    id: int
    obstacle: Obstacle
    seen: List[bool]
    age: int = 1  # frames since it was first seen

    @property
    def hits(self) -> int:
        return sum(self.seen)


class ObstacleTracker:
    """Temporal persistence: components associated across frames by the overlap of their boxes
    (greedy, largest IoU first, at least ``min_iou``), each with an id and an age, confirmed once
    seen in ``k`` of the last ``n`` frames; a track not seen for ``n`` frames is dropped. A
    one-frame blip is never confirmed (with ``k`` > 1)."""

    def __init__(self, k: int = 3, n: int = 5, *, min_iou: float = 0.3):
        if not 1 <= k <= n:
            raise ValueError(f'persistence needs 1 <= k <= n, got k={k}, n={n}')
        self.k, self.n, self.min_iou = k, n, min_iou
        self.tracks: List[Track] = []
        self._next_id = 1

    def update(self, obstacles: List[Obstacle]) -> List[Track]:
        """Take one frame's obstacles; returns the confirmed tracks seen in this frame."""
        pairs = sorted(((box_iou(track.obstacle, obstacle), t, o)
                        for t, track in enumerate(self.tracks)
                        for o, obstacle in enumerate(obstacles)), reverse=True)
        matched_tracks, matched_obstacles = set(), set()
        for iou, t, o in pairs:
            if iou < self.min_iou or t in matched_tracks or o in matched_obstacles:
                continue
            matched_tracks.add(t)
            matched_obstacles.add(o)
            track = self.tracks[t]
            track.obstacle, track.age = obstacles[o], track.age + 1
            track.seen = (track.seen + [True])[-self.n:]
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.age += 1
                track.seen = (track.seen + [False])[-self.n:]
        self.tracks = [track for track in self.tracks if track.hits]
        for o, obstacle in enumerate(obstacles):
            if o not in matched_obstacles:
                self.tracks.append(Track(self._next_id, obstacle, [True]))
                self._next_id += 1
        return [track for track in self.tracks
                if track.seen[-1] and track.hits >= self.k]
