"""The live detector node ``anomseg_detector``: camera image in; semantic labels, anomaly score,
obstacle mask and overlay out, with the input's header so they line up in RViz.

Frames are handed to one worker thread through a single slot: when frames come faster than the
network runs, the newest one wins and the others are counted as dropped; there is no backlog.
"""
import collections
import statistics
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from anomseg_ros.errors import AnomsegError
from anomseg_ros.labels import colorize
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector, make_scorer
from anomseg_ros.ros.dds import configure_dds
from anomseg_ros.ros.conversions import array_to_image_msg, compressed_msg_to_rgb, \
    image_msg_to_rgb
from anomseg_ros.ros.parameters import descriptor, OUTPUTS, PARAMS
from anomseg_ros.visualize import overlay

WARN_PERIOD_S = 5.0
OUTPUT_ENCODINGS = {'semantic': 'mono8', 'semantic_color': 'rgb8', 'anomaly_score': '32FC1',
                    'obstacle_mask': 'mono8', 'overlay': 'rgb8'}


class DetectorNode(Node):
    """Runs the anomseg pipeline on every frame it can keep up with."""

    def __init__(self, **kwargs):
        # the worker state exists before anything can fail, so destroy_node always works
        self._cond = threading.Condition()
        self._running = True
        self._slot = None
        self._worker = None
        self._last_warning = {}
        super().__init__('anomseg_detector', **kwargs)
        for param in PARAMS:
            self.declare_parameter(param.name, param.default, descriptor(param))
        get = self._get
        input_size_hw = (get('input_height'), get('input_width'))
        self.detector = Detector.from_checkpoint(
            resolve_weights(get('weights')), backbone=get('backbone'), scorer=get('scorer'),
            temperature=get('temperature') or None, threshold=get('threshold'),
            device=get('device'), input_size_hw=input_size_hw if all(input_size_hw) else None)
        info = self.detector.info
        if not info.pretrained:
            self.get_logger().warn('weights are RANDOMLY INITIALISED: the outputs are meaningless')
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)

        depth = get('queue_depth')
        output_qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                                reliability=ReliabilityPolicy.RELIABLE)
        self._output_pubs = {name: self.create_publisher(Image, name, output_qos)
                             for name in OUTPUTS if get(f'publish.{name}')}
        input_qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                               reliability=qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        self.create_subscription(Image, 'image', self._on_image, input_qos)
        if get('subscribe_compressed'):
            self.create_subscription(CompressedImage, 'image/compressed', self._on_compressed,
                                     input_qos)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(get('diagnostics_period'), self._publish_diagnostics)

        self.counts = collections.Counter()
        self._latencies_ms = collections.deque(maxlen=100)
        self._last_rate = (time.monotonic(), 0)
        self._worker = threading.Thread(target=self._work, name='anomseg_worker', daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'{info.backbone} ({info.source}) on {self.detector.device}, scorer '
            f'{self.detector.scorer.name}, threshold {self.detector.threshold}, input '
            f'{self.detector.input_size_hw[1]}x{self.detector.input_size_hw[0]}')

    def _get(self, name):
        return self.get_parameter(name).value

    # -- input: keep only the newest frame --------------------------------------------------
    def _on_image(self, msg):
        self._offer(msg, image_msg_to_rgb)

    def _on_compressed(self, msg):
        self._offer(msg, compressed_msg_to_rgb)

    def _offer(self, msg, decode):
        with self._cond:
            self.counts['received'] += 1
            if self._slot is not None:
                self.counts['dropped'] += 1
            self._slot = (msg, decode, time.monotonic())
            self._cond.notify()

    # -- processing ---------------------------------------------------------------------------
    def _work(self):
        while True:
            with self._cond:
                while self._running and self._slot is None:
                    self._cond.wait()
                if not self._running:
                    return
                (msg, decode, arrived), self._slot = self._slot, None
            try:
                image = decode(msg)
            except AnomsegError as exc:
                self._count_lost('rejected', str(exc))
                continue
            try:
                self._process(msg.header, image)
            except Exception as exc:  # keep the node alive; say why the frame was lost
                self._count_lost('failed', f'{type(exc).__name__}: {exc}')
                continue
            self.counts['processed'] += 1
            self._latencies_ms.append((time.monotonic() - arrived) * 1000.0)

    def _count_lost(self, kind: str, reason: str) -> None:
        """Count a lost frame and warn, at most once per ``WARN_PERIOD_S`` per kind.

        (Throttled by hand: rclpy's own throttling refuses messages that change between calls.)
        """
        self.counts[kind] += 1
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARN_PERIOD_S) >= WARN_PERIOD_S:
            self._last_warning[kind] = now
            log = self.get_logger().warn if kind == 'rejected' else self.get_logger().error
            log(f'frame {kind} ({self.counts[kind]} so far): {reason}')

    def _process(self, header, image: np.ndarray):
        detection = self.detector.predict(image)
        outputs = {
            'semantic': lambda: detection.labels,
            'semantic_color': lambda: colorize(detection.labels),
            'anomaly_score': lambda: detection.score_map,
            'obstacle_mask': lambda: detection.mask.astype(np.uint8) * 255,
            'overlay': lambda: overlay(image, detection.mask),
        }
        for name, publisher in self._output_pubs.items():
            publisher.publish(array_to_image_msg(outputs[name](), OUTPUT_ENCODINGS[name], header))

    # -- parameters ---------------------------------------------------------------------------
    def _validate_parameters(self, params):
        values = {p.name: p.value for p in params}
        scorer = values.get('scorer', self.detector.scorer.name)
        temperature = values.get('temperature', self._get('temperature'))
        try:
            make_scorer(scorer, self.detector.info, temperature=temperature or None)
        except AnomsegError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params):
        names = {p.name for p in params}
        if names & {'scorer', 'temperature'}:
            self.detector.set_scorer(self._get('scorer'),
                                     temperature=self._get('temperature') or None)
        if 'threshold' in names:
            self.detector.threshold = float(self._get('threshold'))
        self.get_logger().info(f'now scorer {self.detector.scorer.name}, threshold '
                               f'{self.detector.threshold}')

    # -- diagnostics --------------------------------------------------------------------------
    def _publish_diagnostics(self):
        now, processed = time.monotonic(), self.counts['processed']
        then, processed_then = self._last_rate
        self._last_rate = (now, processed)
        rate_hz = (processed - processed_then) / max(now - then, 1e-9)
        latency = statistics.median(self._latencies_ms) if self._latencies_ms else float('nan')
        status = DiagnosticStatus(name=f'{self.get_name()}: pipeline',
                                  hardware_id=str(self.detector.device))
        if self.counts['failed']:
            status.level, status.message = DiagnosticStatus.ERROR, 'frames failed'
        elif self.counts['rejected']:
            status.level, status.message = DiagnosticStatus.WARN, 'frames rejected'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'running'
        values = {
            'latency_ms_median': f'{latency:.1f}', 'output_rate_hz': f'{rate_hz:.2f}',
            **{f'frames_{k}': str(self.counts[k])
               for k in ('received', 'processed', 'dropped', 'rejected', 'failed')},
            'backbone': self.detector.info.backbone, 'scorer': self.detector.scorer.name,
            'threshold': str(self.detector.threshold), 'weights': self.detector.info.source,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)

    def destroy_node(self):
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        return super().destroy_node()


def main(args=None):
    applied = configure_dds()
    rclpy.init(args=args)
    try:
        node = DetectorNode()
    except AnomsegError as exc:
        print(f'anomseg_detector: cannot start: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(1)
    if applied:
        node.get_logger().info(f'DDS: {applied} (set FASTDDS_DEFAULT_PROFILES_FILE to use a '
                               f'profile of your own)')
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
