"""One bag through the detector, offline: what a fleet result line says of it.

Every frame of the bag's camera topic goes through the node's own ``Detector`` (one forward
pass, every scorer asked for on its logits) at the camera's resolution, as the node publishes
it. Per scorer the bag keeps the pixel histograms of ``AnomalyMetrics`` where it has ground
truth (pooled later over bags without holding a pixel), the distribution of all its scores,
and the share of pixels flagged at the scorer's threshold (the checkpoint's calibrated one
with ``threshold: auto``). The first scorer also makes the obstacle mask: obstacles per frame
and per minute, and the frames with the most anomalous evidence on the road (``top_k``).
"""
import dataclasses
import heapq
import time
import traceback
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.errors import AnomsegError, first_line
from anomseg_ros.evaluation.anomaly import score_image
from anomseg_ros.evaluation.metrics import AnomalyMetrics, ScoreDistribution
from anomseg_ros.obstacles import DEFAULT_MIN_AREA, drivable_region, find_obstacles
from anomseg_ros.visualize import heatmap, overlay

QUANTILES = (0.01, 0.5, 0.99, 0.999)


@dataclasses.dataclass(frozen=True)
class FleetConfig:
    """Everything that decides a bag's result (a result line is reused only under the same
    config and the same weights file); plain values, so it travels to Ray workers."""

    weights: str
    scorers: Tuple[str, ...] = ('msp',)
    backbone: Optional[str] = None
    device: str = 'auto'
    precision: str = 'auto'
    runtime: str = 'auto'
    calibration: str = ''                 # precision int8's (Detector.from_checkpoint)
    int8_max_drop: Optional[float] = None
    input_size_hw: Optional[Tuple[int, int]] = None
    threshold: object = 'auto'
    temperature: Optional[float] = None
    image_topic: Optional[str] = None
    min_area: int = DEFAULT_MIN_AREA
    top_k: int = 0            # frames kept per bag for mining
    thumb_width: int = 320    # of each half of a mined frame's picture

    def key(self, weights_sha256: str) -> dict:
        """What a result line must match to be reused (the weights by content)."""
        described = dataclasses.asdict(self)
        described['weights'] = weights_sha256
        described['scorers'] = list(self.scorers)
        described['input_size_hw'] = list(self.input_size_hw or ()) or None
        described['threshold'] = str(self.threshold)
        described.pop('thumb_width')
        return described


@dataclasses.dataclass
class Candidate:
    """A frame worth looking at: the largest obstacle on the road and the road's flagged
    share, with a picture (overlay | score heat map) as JPEG bytes."""

    stamp_ns: int
    largest_obstacle_px: int
    road_flagged_share: float
    obstacles: int
    thumbnail: bytes = b''
    pixels: Optional[tuple] = dataclasses.field(default=None, repr=False)  # until pictured

    @property
    def rank(self) -> Tuple[float, float]:
        return (self.largest_obstacle_px, self.road_flagged_share)


def sparse(counts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The non-empty bins of a histogram (a bag fills a few thousand of the 2**20)."""
    index = np.flatnonzero(counts)
    return index.astype(np.int32), counts[index]


class BagScorer:
    """Loads the model once (``config``); ``score(path)`` gives one bag's result."""

    def __init__(self, config: FleetConfig):
        from anomseg_ros.pipeline import Detector
        self.config = config
        self.detector = Detector.from_checkpoint(
            config.weights, backbone=config.backbone, scorer=config.scorers[0],
            temperature=config.temperature, threshold=config.threshold, device=config.device,
            precision=config.precision, runtime=config.runtime,
            input_size_hw=config.input_size_hw, calibration=config.calibration,
            int8_max_drop=config.int8_max_drop)
        self.settings = {name: self.detector.settings_for(
            name, temperature=config.temperature, threshold=config.threshold)
            for name in config.scorers}
        self.scorers = {name: settings.scorer for name, settings in self.settings.items()}

    def describe(self) -> dict:
        d = self.detector
        return {'runtime': d.runtime, 'precision': d.precision_name, 'device': str(d.device),
                'input_size_wh': list(d.input_size_hw[::-1]), 'trained_on': d.info.trained_on,
                'thresholds': {name: s.describe() for name, s in self.settings.items()}}

    def score(self, path: str) -> dict:
        """The bag's result: never raises; a bag that cannot be scored is an error result."""
        started = time.perf_counter()
        try:
            result = self._score(path)
            result['status'] = 'damaged' if result['damage_text'] else 'ok'
        except AnomsegError as exc:
            result = {'status': 'error', 'error': str(exc)}
        except Exception as exc:  # noqa: B902 - one bag never ends the fleet
            result = {'status': 'error',
                      'error': f'{type(exc).__name__}: {first_line(exc)}',
                      'traceback': traceback.format_exc(limit=8)}
        result['seconds'] = round(time.perf_counter() - started, 3)
        return result

    @torch.inference_mode()
    def _score(self, path: str) -> dict:
        from rosbag_tools.bags import BagDamage, read_frames
        config = self.config
        primary = config.scorers[0]
        metrics = {name: AnomalyMetrics() for name in config.scorers}
        spread = {name: ScoreDistribution() for name in config.scorers}
        damage = BagDamage()
        frames = labelled = obstacles = 0
        first_stamp = last_stamp = None
        kept: List[Tuple[Tuple[float, float], int, Candidate]] = []  # a min-heap of top_k
        for frame in read_frames(path, image_topic=config.image_topic, damage=damage):
            frames += 1
            first_stamp = frame.stamp_ns if first_stamp is None else first_stamp
            last_stamp = frame.stamp_ns
            size_hw = frame.image.shape[:2]
            logits = self.detector.logits([frame.image])
            labels = self.detector.semantic(logits)
            if tuple(labels.shape[-2:]) != tuple(size_hw):
                labels = F.interpolate(labels[None].float(), size=size_hw, mode='nearest')[0]
            labels = labels[0].to(torch.uint8).cpu().numpy()
            maps = score_image(self.detector, self.scorers, frame.image, 'label', logits=logits)
            for name in maps:
                if not np.isfinite(maps[name]).all():
                    raise AnomsegError(f'{path}: frame {frame.stamp_ns}: {name} gave NaN or '
                                       f'infinite scores; no result is made from them')
                spread[name].update(maps[name])
                if frame.anomaly is not None:
                    metrics[name].update(maps[name], frame.anomaly)
            labelled += frame.anomaly is not None
            mask = maps[primary] >= self.settings[primary].threshold
            found = find_obstacles(mask, maps[primary], min_area=config.min_area)
            obstacles += len(found)
            if config.top_k:
                candidate = self._candidate(frame, maps[primary], mask, labels, len(found))
                entry = (candidate.rank, -frame.stamp_ns, candidate)
                if len(kept) < config.top_k:
                    heapq.heappush(kept, entry)
                elif entry[:2] > kept[0][:2]:
                    heapq.heapreplace(kept, entry)
        for _, _, candidate in kept:  # pictures of the kept frames only
            candidate.thumbnail = self._thumbnail(*candidate.pixels)
            candidate.pixels = None
        span_s = None if first_stamp is None or frames < 2 else (last_stamp - first_stamp) / 1e9
        minutes = span_s * frames / (frames - 1) / 60 if span_s else None  # one period per frame
        scorers = {}
        for name, settings in self.settings.items():
            threshold = settings.threshold
            entry = {'threshold': threshold, 'threshold_source': settings.threshold_source,
                     'flagged_share': spread[name].share_at_or_above(threshold),
                     'score_quantiles': spread[name].quantiles(QUANTILES)}
            if metrics[name].num_images:
                computed = metrics[name].compute()
                at = metrics[name].at_threshold(threshold)
                entry.update(auprc=computed['auprc'], fpr95=computed['fpr95'],
                             auroc=computed['auroc'], mask_precision=at['precision'],
                             mask_recall=at['recall'],
                             anomaly_pixels=computed['num_anomaly_pixels'])
            scorers[name] = entry
        return {'frames': frames, 'labelled_frames': labelled,
                'recorded_seconds': None if minutes is None else round(minutes * 60, 3),
                'obstacles_per_frame': obstacles / frames if frames else None,
                'obstacles_per_minute': obstacles / minutes if minutes else None,
                'scorers': scorers, 'damage': damage.to_dict(), 'damage_text': damage.summary(),
                'histograms': {name: {'positives': sparse(metrics[name].positives),
                                      'negatives': sparse(metrics[name].negatives),
                                      'all': sparse(spread[name].counts)}
                               for name in config.scorers},
                'candidates': [c for _, _, c in sorted(kept, reverse=True)]}

    def _candidate(self, frame, score_map, mask, labels, count) -> Candidate:
        road = drivable_region(labels)
        on_road = find_obstacles(mask & road, score_map, min_area=self.config.min_area)
        share = float(mask[road].mean()) if road.any() else 0.0
        return Candidate(frame.stamp_ns, on_road[0].area if on_road else 0, share, count,
                         pixels=(frame.image, score_map, mask))

    def _thumbnail(self, image, score_map, mask) -> bytes:
        width = self.config.thumb_width
        height = max(1, round(image.shape[0] * width / image.shape[1]))
        halves = [cv2.resize(overlay(image, mask), (width, height),
                             interpolation=cv2.INTER_AREA),
                  cv2.resize(heatmap(score_map), (width, height),
                             interpolation=cv2.INTER_AREA)]
        ok, jpeg = cv2.imencode('.jpg', np.concatenate(halves, axis=1)[..., ::-1],
                                [cv2.IMWRITE_JPEG_QUALITY, 85])
        return jpeg.tobytes() if ok else b''
