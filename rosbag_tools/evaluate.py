"""Measure the detector on a bag: live through the real node over DDS, or offline with the same
pipeline in-process. Both pool the pixels of all frames at the camera resolution (or, with
``size_hw``, shrink the published maps and the ground truth to the network's input size, as
``anomseg eval --resolution network`` compares), so their numbers agree; the live run also
accounts for every frame it sent."""
import contextlib
import dataclasses
import time
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from anomseg_ros.data.images import resize_label
from anomseg_ros.evaluation import AnomalyMetrics, SegmentationMetrics
from anomseg_ros.labels import CITYSCAPES_CLASSES
from anomseg_ros.data.messages import image_msg_to_array
from rosbag_tools.bags import BagDamage, BagWriter, image_message, read_frames

RECORD_TOPICS = {'anomaly_score': '/anomseg/anomaly_score', 'semantic': '/anomseg/semantic'}


@dataclasses.dataclass
class BagScore:
    """Metrics accumulated over a bag, and what happened to each frame."""

    anomaly: AnomalyMetrics = dataclasses.field(default_factory=AnomalyMetrics)
    segmentation: SegmentationMetrics = dataclasses.field(
        default_factory=lambda: SegmentationMetrics(len(CITYSCAPES_CLASSES),
                                                    class_names=CITYSCAPES_CLASSES))
    sent: int = 0
    received: int = 0
    damage: BagDamage = dataclasses.field(default_factory=BagDamage)
    missing_stamps: List[int] = dataclasses.field(default_factory=list)
    # compare at this (height, width) instead of the camera's: scores shrunk by area, labels
    # (published and ground truth) by PIL's nearest
    size_hw: Optional[Tuple[int, int]] = None

    def add(self, frame, score_map: np.ndarray, labels: np.ndarray) -> None:
        self.received += 1
        anomaly, semantic = frame.anomaly, frame.semantic
        if self.size_hw is not None:
            size_wh = self.size_hw[::-1]
            if score_map.shape != tuple(self.size_hw):
                score_map = cv2.resize(score_map, size_wh, interpolation=cv2.INTER_AREA)
            labels = resize_label(labels, size_wh)
            anomaly = None if anomaly is None else resize_label(anomaly, size_wh)
            semantic = None if semantic is None else resize_label(semantic, size_wh)
        if anomaly is not None:
            self.anomaly.update(score_map, anomaly)
        if semantic is not None:
            self.segmentation.update(labels, semantic)

    @property
    def resolution(self) -> str:
        if self.size_hw is None:
            return 'camera resolution, as published'
        return f'network resolution {self.size_hw[1]}x{self.size_hw[0]}'

    def report(self) -> Dict[str, object]:
        result = {'resolution': self.resolution,
                  'frames_sent': self.sent, 'frames_received': self.received,
                  'frames_missing': len(self.missing_stamps),
                  'missing_stamps_ns': self.missing_stamps[:20],
                  'damage': self.damage.to_dict()}
        if self.anomaly.num_images:
            result['anomaly'] = self.anomaly.compute()
        if self.segmentation.num_images:
            result['segmentation'] = self.segmentation.compute()
        return result


def evaluate_offline(path: str, detector, *,
                     size_hw: Optional[Tuple[int, int]] = None) -> Dict[str, object]:
    """The node's pipeline run in-process on every frame of the bag (no ROS); ``size_hw`` as
    in ``BagScore``."""
    score = BagScore(size_hw=size_hw)
    for frame in read_frames(path, damage=score.damage):
        score.sent += 1
        detection = detector.predict(frame.image)
        score.add(frame, detection.score_map, detection.labels)
    return score.report()


def evaluate_live(path: str, *, params: Optional[Dict[str, object]] = None,
                  namespace: str = '/anomseg_bag_eval', rate_hz: Optional[float] = None,
                  timeout: float = 60.0, record: Optional[str] = None, connect: bool = False,
                  log_path: Optional[str] = None, startup_timeout: float = 180.0,
                  size_hw: Optional[Tuple[int, int]] = None) -> Dict[str, object]:
    """Replay the bag's frames to the detector node and score what it publishes.

    ``rate_hz=None`` paces the replay on the node (each frame waits for its outputs), so no
    frame is dropped; a rate replays on the clock, and frames the node skipped to stay current
    come back as missing. ``connect`` uses a node already running in ``namespace`` instead of
    starting one with ``params``, whose log goes to ``log_path``; ``startup_timeout`` is how
    long its first answer may take (a first start converts the model), ``timeout`` how long
    each frame's. ``record`` writes the node's outputs to a new bag; ``size_hw`` as in
    ``BagScore``.
    """
    from anomseg_ros.ros.client import live_detector
    score = BagScore(size_hw=size_hw)
    with contextlib.ExitStack() as stack:  # leaves what was entered, in reverse order
        # the record bag first: an existing one is refused before any node starts
        recorder = stack.enter_context(BagWriter(record, 'mcap')) if record else None
        client = stack.enter_context(live_detector(
            namespace, params=params, outputs=tuple(RECORD_TOPICS), log_path=log_path,
            connect=connect, timeout=startup_timeout)).client
        frames = {}
        for frame in read_frames(path, damage=score.damage):
            client.publish_rgb(frame.image, frame.stamp_ns, frame_id=frame.frame_id)
            score.sent += 1
            if rate_hz is None:
                _collect(client, frame, score, recorder, timeout)
            else:
                frames[frame.stamp_ns] = frame
                time.sleep(1.0 / rate_hz)
        # clocked replay: once the last frame is out, every frame the node did not skip
        # is out too (it works in order), so only the last one is waited for in full
        last = max(frames, default=None)
        for stamp_ns in sorted(frames, key=lambda s: s != last):
            _collect(client, frames[stamp_ns], score, recorder,
                     timeout if stamp_ns == last else 0.5)
    return score.report()


def _collect(client, frame, score, recorder, timeout) -> None:
    outputs = client.wait_outputs(frame.stamp_ns, timeout=timeout)
    if outputs is None:
        score.missing_stamps.append(frame.stamp_ns)
        return
    score_map = image_msg_to_array(outputs['anomaly_score'])[0]
    labels = image_msg_to_array(outputs['semantic'])[0]
    score.add(frame, score_map, labels)
    if recorder is not None:
        for name, array in (('anomaly_score', score_map), ('semantic', labels)):
            recorder.write(RECORD_TOPICS[name], image_message(array, frame.stamp_ns,
                                                              frame.frame_id), frame.stamp_ns)
