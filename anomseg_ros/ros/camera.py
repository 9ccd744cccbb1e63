"""One camera's side of the detector node: its subscriptions, its outputs, its camera_info and
its counters.

A node with one camera (the default, ``cameras: []``) subscribes to ``image`` (remapped by the
launch file) and publishes its outputs under its own namespace. With ``cameras: [front,
/left/image_raw, ...]`` each entry is a camera: a name (its image topic ``NAME/image_raw`` in
the node's namespace) or an image topic (named after the folder it is in: ``left``). Each
camera's outputs go to ``NAME/<output>`` in the node's namespace, each re-stamped with that
camera's header, and its camera_info (``image_transport``'s sibling ``camera_info`` of its
image topic) is republished on ``NAME/camera_info``.
"""
import collections
import posixpath
import re
import statistics
import time
from typing import List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from anomseg_ros.errors import ConfigError
from anomseg_ros.obstacles import find_obstacles, ObstacleTracker
from anomseg_ros.ros.conversions import (array_to_image_msg, compressed_image_msg,
                                         obstacles_to_detections)
from anomseg_ros.ros.health import FrameHealth
from anomseg_ros.ros.outputs import compress

WARN_PERIOD_S = 5.0
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*$')
STAGES = ('wait', 'decode', 'forward', 'score', 'resize', 'outputs')


def parse_cameras(entries) -> List[Tuple[str, str]]:
    """``(name, image topic)`` per entry of the ``cameras`` parameter; ``[('', 'image')]`` for
    none (the single camera of the launch file's ``image``)."""
    if isinstance(entries, (str, bytes)) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f'parameter \'cameras\' is a list of names or image topics '
                          f'([front, /left/image_raw]); got {entries!r}')
    cameras = []
    for entry in entries:
        entry = str(entry).strip()
        if '/' in entry:
            topic = entry
            name = posixpath.basename(posixpath.dirname(entry.rstrip('/')))
        else:
            name, topic = entry, f'{entry}/image_raw'
        if not NAME.match(name or ''):
            raise ConfigError(f'parameter \'cameras\': {entry!r} names no camera: give a name '
                              f'(front: its topic is front/image_raw) or an image topic inside '
                              f'the camera\'s namespace (/front/image_raw)')
        if name in (n for n, _ in cameras):
            raise ConfigError(f'parameter \'cameras\': two cameras are called {name!r}; their '
                              f'outputs would share topics (give each a topic in its own '
                              f'namespace)')
        cameras.append((name, topic))
    return cameras or [('', 'image')]


class CameraIO:
    """A camera's publishers, subscriptions, camera_info and health (made by the node)."""

    def __init__(self, node, index: int, name: str, image_topic: str, *, outputs, compressed,
                 obstacles: bool, debug: bool, qos, health: FrameHealth,
                 tracker: Optional[ObstacleTracker]):
        self.node, self.index, self.name, self.image_topic = node, index, name, image_topic
        self.prefix = f'{name}/' if name else ''
        self.label = f'camera {name}: ' if name else ''
        make = node.create_publisher
        self.outputs = [(output, make(Image, self.prefix + output.name, qos))
                        for output in outputs]
        self.compressed = {output.name: make(CompressedImage,
                                             f'{self.prefix}{output.name}/compressed', qos)
                           for output in outputs if compressed and output.compression}
        self.obstacles_pub = None
        if obstacles:
            from vision_msgs.msg import Detection2DArray
            self.obstacles_pub = make(Detection2DArray, self.prefix + 'obstacles', qos)
        self.settings_pub = make(DiagnosticArray, self.prefix + 'frame_settings', qos)
        self.debug_pubs = None
        if debug:
            from std_msgs.msg import Float64
            self.debug_pubs = tuple(make(Float64, f'~/debug/{self.prefix}{name_}', 10)
                                    for name_ in ('processing_time_ms', 'pipeline_latency_ms'))
        self.made = [pub for _, pub in self.outputs] + list(self.compressed.values()) + [
            pub for pub in (self.obstacles_pub, self.settings_pub) if pub is not None] + \
            list(self.debug_pubs or ())
        self.health, self.tracker = health, tracker
        self.camera_info_pub = None
        self.camera_info = None  # (CameraInfo, arrival time)
        self.camera_info_counts = collections.Counter(
            {k: 0 for k in ('published', 'rejected', 'mismatched', 'stale')})
        self.camera_info_topics = ('', '')
        self.latencies_ms, self.stage_history = [], []
        self.last_rate = (time.monotonic(), 0)
        self._last_warning = {}
        self.subscriptions = []

    # -- subscriptions (the node's activate / deactivate) ---------------------------------------
    def subscribe(self, qos, output_qos, *, compressed: bool, on_frame) -> None:
        """The image topic (and its ``/compressed``), and the camera_info beside it; frames go
        to ``on_frame(msg, decoder, camera index)``."""
        from anomseg_ros.data.messages import compressed_msg_to_rgb, image_msg_to_rgb
        node = self.node
        image_sub = node.create_subscription(
            Image, self.image_topic, lambda msg: on_frame(msg, image_msg_to_rgb, self.index), qos)
        self.subscriptions = [image_sub]
        if compressed:
            self.subscriptions.append(node.create_subscription(
                CompressedImage, f'{self.image_topic}/compressed',
                lambda msg: on_frame(msg, compressed_msg_to_rgb, self.index), qos))
        self._subscribe_camera_info(image_sub.topic_name, qos, output_qos)

    def _subscribe_camera_info(self, image_topic: str, qos, output_qos) -> None:
        """The camera's ``camera_info`` beside its image topic (image_transport's convention:
        ``/camera/image_raw`` -> ``/camera/camera_info``), republished with each output on
        ``camera_info``; where that is the camera's own topic (the node in the camera's
        namespace), on ``~/camera_info`` instead: the node never publishes on the camera's."""
        node = self.node
        topic = posixpath.join(posixpath.dirname(image_topic), 'camera_info')
        ours = self.prefix + 'camera_info'
        if node.resolve_topic_name(ours) == topic:
            ours = '~/' + ours
        self.camera_info_pub = node.create_publisher(CameraInfo, ours, output_qos)
        self.camera_info_topics = (topic, self.camera_info_pub.topic_name)
        if ours.startswith('~/'):
            node.get_logger().info(f'the camera\'s camera_info is {topic}, beside its image: '
                                   f'it is republished, re-stamped with each frame, on '
                                   f'{self.camera_info_pub.topic_name}')
        self.subscriptions.append(node.create_subscription(CameraInfo, topic,
                                                           self.on_camera_info, qos))

    def unsubscribe(self) -> None:
        for subscription in self.subscriptions:
            self.node.destroy_subscription(subscription)
        self.subscriptions = []
        if self.camera_info_pub is not None:
            self.node.destroy_publisher(self.camera_info_pub)
            self.camera_info_pub = None

    def destroy(self) -> None:
        self.unsubscribe()
        for publisher in self.made:
            self.node.destroy_publisher(publisher)
        self.made = []

    def has_listeners(self) -> bool:
        publishers = self.made + [pub for pub in (self.camera_info_pub,) if pub is not None]
        return any(pub.get_subscription_count() for pub in publishers)

    # -- camera_info ----------------------------------------------------------------------------
    def on_camera_info(self, msg) -> None:
        """Keep the camera's newest camera_info if it can describe an image at all."""
        k = np.asarray(msg.k, dtype=np.float64)
        problem = ''
        if msg.width <= 0 or msg.height <= 0:
            problem = f'its size is {msg.width}x{msg.height}'
        elif k.size != 9 or not np.isfinite(k).all():
            problem = 'its K matrix is not finite'
        elif not k.any() or k[0] <= 0 or k[4] <= 0:
            problem = 'its K matrix has no focal length (all zero, or fx / fy not positive)'
        if problem:
            self.camera_info = None
            self._camera_info_problem('rejected', f'camera_info refused: {problem}; it is not '
                                                  f'republished')
            return
        self.camera_info = (msg, time.monotonic())

    def republish_camera_info(self, header, size_hw, max_age_s: float) -> None:
        """The camera's camera_info, re-stamped with the frame's header, when it describes
        frames of this size and is recent; else it is held back, counted and warned about."""
        if self.camera_info is None or self.camera_info_pub is None:
            return
        info, arrived = self.camera_info
        age = time.monotonic() - arrived
        if (info.height, info.width) != tuple(size_hw):
            self._camera_info_problem(
                'mismatched', f'camera_info is for {info.width}x{info.height} images, the frames '
                              f'are {size_hw[1]}x{size_hw[0]}: it is not republished (fix the '
                              f'camera driver\'s calibration or its resolution)')
        elif age > max_age_s:
            self._camera_info_problem(
                'stale', f'the newest camera_info is {age:.1f} s old (camera_info_max_age '
                         f'{max_age_s:g} s): it is not republished')
        else:
            info.header = header
            self.camera_info_pub.publish(info)
            self.camera_info_counts['published'] += 1

    def _camera_info_problem(self, kind: str, text: str) -> None:
        self.camera_info_counts[kind] += 1
        self.warn(f'camera_info_{kind}', f'{text} ({self.camera_info_counts[kind]} so far)')

    def warn(self, key: str, text: str, *, error: bool = False) -> None:
        """A warning (or error) at most once per ``WARN_PERIOD_S`` per ``key``. (Throttled by
        hand: rclpy's own throttling refuses messages that change between calls.)"""
        now = time.monotonic()
        if now - self._last_warning.get(key, -WARN_PERIOD_S) < WARN_PERIOD_S:
            return
        self._last_warning[key] = now
        # one call site per severity: rclpy refuses a call site whose severity changes
        if error:
            self.node.get_logger().error(self.label + text)
        else:
            self.node.get_logger().warning(self.label + text)

    # -- one frame's outputs --------------------------------------------------------------------
    def publish(self, header, image: np.ndarray, detection, *, min_obstacle_area: int,
                camera_info_max_age: float) -> None:
        """Every output someone reads, from one frame and its detection, with its header."""
        if self.settings_pub.get_subscription_count():
            self.settings_pub.publish(settings_msg(detection.settings, header))
        for output, publisher in self.outputs:
            compressed = self.compressed.get(output.name)
            wanted = publisher.get_subscription_count()
            wanted_compressed = compressed is not None and compressed.get_subscription_count()
            if not (wanted or wanted_compressed):
                continue  # rendering costs: only for outputs someone reads
            array = output.render(image, detection)
            if wanted:
                publisher.publish(array_to_image_msg(array, output.encoding, header))
            if wanted_compressed:
                fmt, data = compress(array, output.encoding, output.compression)
                compressed.publish(compressed_image_msg(header, fmt, data))
        if self.obstacles_pub is not None and self.obstacles_pub.get_subscription_count():
            obstacles = find_obstacles(detection.mask, detection.score_map,
                                       min_area=min_obstacle_area)
            ids = None
            if self.tracker is not None:  # only those seen k of the last n frames
                tracks = self.tracker.update(obstacles)
                obstacles, ids = [t.obstacle for t in tracks], [t.id for t in tracks]
            self.obstacles_pub.publish(obstacles_to_detections(obstacles, header, ids))
        self.republish_camera_info(header, image.shape[:2], camera_info_max_age)

    def record(self, arrived: float, stages_ms: dict) -> None:
        """A processed frame: its latency since arrival, and its time in each stage."""
        self.health.count('processed')
        self.latencies_ms = (self.latencies_ms + [(time.monotonic() - arrived) * 1e3])[-100:]
        self.stage_history = (self.stage_history + [stages_ms])[-100:]

    def publish_debug(self, header, taken: float) -> None:
        if self.debug_pubs is None:
            return
        from std_msgs.msg import Float64
        from anomseg_ros.data.messages import stamp_to_ns
        processing, latency = self.debug_pubs
        processing.publish(Float64(data=(time.monotonic() - taken) * 1e3))
        latency.publish(Float64(data=(self.node.get_clock().now().nanoseconds
                                      - stamp_to_ns(header.stamp)) / 1e6))

    # -- diagnostics ----------------------------------------------------------------------------
    def values(self) -> dict:
        """This camera's diagnostics values: latency, rate, stages, counters, camera_info."""
        counts = self.health.snapshot()
        now, processed = time.monotonic(), counts['processed']
        then, processed_then = self.last_rate
        self.last_rate = (now, processed)
        rate_hz = (processed - processed_then) / max(now - then, 1e-9)
        latencies = self.latencies_ms
        latency = statistics.median(latencies) if latencies else float('nan')
        recent = self.health.recent()
        return {
            'image_topic': self.subscriptions[0].topic_name if self.subscriptions else
            self.image_topic,
            'latency_ms_median': f'{latency:.1f}', 'output_rate_hz': f'{rate_hz:.2f}',
            **stage_medians(self.stage_history),
            **{f'frames_{k}': str(v) for k, v in counts.items()},
            **{f'recent_{k}': str(recent[k]) for k in ('rejected', 'failed', 'nonfinite')},
            **{f'camera_info_{k}': str(v) for k, v in self.camera_info_counts.items()},
            'camera_info_in': self.camera_info_topics[0],
            'camera_info_out': self.camera_info_topics[1],
        }


def stage_medians(history) -> dict:
    """``stage_ms_<stage>``: the median milliseconds of each stage of a frame's path through
    the node over the last frames (wait: in the slot; decode; forward: preprocess and network,
    of the whole batch; score: scorer and labels; resize: back to the camera's size and the
    mask; outputs: rendering, messages and publishing)."""
    return {f'stage_ms_{stage}': f'{statistics.median(h[stage] for h in history):.1f}'
            for stage in STAGES if history and all(stage in h for h in history)}


def settings_msg(settings, header) -> DiagnosticArray:
    """The settings that produced one frame's outputs (``frame_settings``), stamped with the
    frame's header, so a consumer can check each mask against its own scorer and threshold."""
    result = DiagnosticStatus(name='anomseg frame settings', level=DiagnosticStatus.OK)
    result.values = [KeyValue(key=key, value=str(value))
                     for key, value in settings.describe().items()]
    return DiagnosticArray(header=header, status=[result])


def status(name: str, level: int, message: str, hardware_id: str, values: dict):
    result = DiagnosticStatus(name=name, hardware_id=hardware_id, level=bytes([level]),
                              message=message)
    result.values = [KeyValue(key=k, value=v) for k, v in values.items()]
    return result
