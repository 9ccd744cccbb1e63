"""The live detector node ``anomseg_detector``: camera image in; semantic labels, anomaly score,
obstacle mask, overlay and the obstacles as objects out, with the input's header so they line
up in RViz.

Frames are handed to one worker thread through a single slot: when frames come faster than the
network runs, the newest one wins and the others are counted as dropped; there is no backlog.
Nothing a frame can raise ends the worker: a frame that cannot be decoded is counted as
rejected, one that fails in the network or scores non-finite as failed, each with a throttled
warning that says why; and a worker that stopped all the same is an ERROR in /diagnostics and
is started again. Each frame is processed with one snapshot of the settings (``Settings``)
and the snapshot is published beside its outputs (``frame_settings``). The process around the
node (signals, start-up, exit) is ``anomseg_ros.ros.process``.
"""
import collections
import logging
import posixpath
import statistics
import sys
import threading
import time
import traceback
from typing import Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
from rclpy.qos import DurabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from anomseg_ros.errors import AnomsegError, ConfigError, first_line, NonFiniteScores
from anomseg_ros.obstacles import find_obstacles, MASK_REGIONS, ObstacleTracker
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector, make_scorer, parse_threshold
from anomseg_ros.data.messages import compressed_msg_to_rgb, image_msg_to_rgb, stamp_to_ns
from anomseg_ros.ros.conversions import array_to_image_msg, label_info_msg, \
    obstacles_to_detections, vision_msgs_available
from anomseg_ros.ros.dds import configure_dds
from anomseg_ros.ros.health import FrameHealth, OK, WARN
from anomseg_ros.ros.outputs import compress, IMAGE_OUTPUTS, OPTIONAL_OUTPUTS
from anomseg_ros.ros.parameters import descriptor, PARAMS
from anomseg_ros.scoring.base import check_temperature

WARN_PERIOD_S = 5.0


class RosLogHandler(logging.Handler):
    """The core's ``logging`` records (logger ``anomseg_ros``) in the node's ROS log."""

    def __init__(self, logger):
        super().__init__()
        self.logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            # one call site per severity: rclpy refuses a call site whose severity changes
            if record.levelno >= logging.ERROR:
                self.logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.logger.warning(text)
            else:
                self.logger.info(text)
        except Exception:  # noqa: B902 - logging must never end the code that logs
            self.handleError(record)


class _Detector:
    """The detector node's work, in the phases of a managed node: declare the parameters,
    configure (the model, its publishers), activate (subscriptions, timer, worker). The plain
    ``DetectorNode`` runs them all at construction; ``ManagedDetectorNode`` on its lifecycle
    transitions."""

    def _init_state(self) -> None:
        # the worker state exists before anything can fail, so destroy_node always works
        self._cond = threading.Condition()
        self._running = True
        self._slot = None
        self._in_work_since: Optional[float] = None  # arrival of the frame in the network
        self._worker: Optional[threading.Thread] = None
        self._worker_error = ''
        self.worker_restarts = 0
        self._last_warning = {}
        self._camera_info: Optional[tuple] = None  # (CameraInfo, arrival time)
        self.camera_info_counts = collections.Counter(
            {name: 0 for name in ('published', 'rejected', 'mismatched', 'stale')})
        self._threshold_reset: Optional[float] = None
        self._made = []  # the publishers of the current configuration
        self._param_callbacks = []
        self.detector = None

    def _start_logging(self) -> None:
        self._log_handler = RosLogHandler(self.get_logger())
        logging.getLogger('anomseg_ros').addHandler(self._log_handler)
        logging.getLogger('anomseg_ros').setLevel(logging.INFO)

    def _declare_parameters(self) -> None:
        for param in PARAMS:
            self._declare(param)
        self._check_unknown_parameters()

    def _configure(self) -> None:
        """The detector (the model loaded), the parameter callbacks and the publishers."""
        get = self._get
        input_size_hw = (get('input_height'), get('input_width'))
        temperature = get('temperature') or None
        try:
            threshold = parse_threshold(get('threshold'))
        except ConfigError as exc:
            raise ConfigError(f'parameter \'threshold\': {exc}') from None
        self.detector = Detector.from_checkpoint(
            resolve_weights(get('weights')), backbone=get('backbone'), scorer=get('scorer'),
            temperature=temperature, threshold=threshold, device=get('device'),
            precision=get('precision'), runtime=get('runtime'),
            input_size_hw=input_size_hw if all(input_size_hw) else None,
            calibration=get('calibration'), int8_max_drop=get('int8_max_drop'))
        info = self.detector.info
        if not info.pretrained:
            self.get_logger().warning('weights are RANDOMLY INITIALISED: the outputs are '
                                      'meaningless')
        elif info.trained_on == 'synthetic':
            self.get_logger().warning(
                f'{info.source} was trained only on the package\'s synthetic road world: on a '
                f'real camera its scores are near chance and its masks flag vegetation and road '
                f'patches; use the public Cityscapes ERFNet (erfnet_pretrained.pth) and adapt '
                f'it to your camera (anomseg adapt; README: Your own camera)')
        self.max_pixels = get('max_input_pixels')
        self.min_obstacle_area = get('min_obstacle_area')
        self.lazy = get('lazy')
        self.camera_info_max_age = get('camera_info_max_age')
        if get('persistence_k') > get('persistence_n'):
            raise ConfigError(f'persistence_k ({get("persistence_k")}) must be at most '
                              f'persistence_n ({get("persistence_n")})')
        self.tracker = ObstacleTracker(get('persistence_k'), get('persistence_n')) \
            if get('persistence_k') else None
        try:
            self.detector.configure(mask_region=get('mask_region'))
        except ConfigError as exc:
            raise ConfigError(f'parameter \'mask_region\': {exc}') from None

        depth = get('queue_depth')
        output_qos = QoSProfile(depth=depth, history=HistoryPolicy.KEEP_LAST,
                                reliability=ReliabilityPolicy.RELIABLE)
        try:
            self.detector.set_resynthesis(bool(get('publish.resynthesis')))
        except ConfigError as exc:
            raise ConfigError(f'parameter \'publish.resynthesis\': {exc}') from None
        self._outputs = [(output, self.create_publisher(Image, output.name, output_qos))
                         for output in IMAGE_OUTPUTS + OPTIONAL_OUTPUTS
                         if get(f'publish.{output.name}')]
        self._compressed = {}
        if get('publish_compressed'):
            self._compressed = {
                output.name: self.create_publisher(CompressedImage, f'{output.name}/compressed',
                                                   output_qos)
                for output, _ in self._outputs if output.compression}
        self._obstacles_pub = None
        if get('publish.obstacles') and vision_msgs_available():
            from vision_msgs.msg import Detection2DArray
            self._obstacles_pub = self.create_publisher(Detection2DArray, 'obstacles', output_qos)
        elif get('publish.obstacles'):
            self.get_logger().info('obstacles (vision_msgs/Detection2DArray) are not published: '
                                   'vision_msgs is not installed (sudo apt install '
                                   'ros-$ROS_DISTRO-vision-msgs); obstacle_mask has them')
        self._publish_class_table(info)
        self._settings_pub = self.create_publisher(DiagnosticArray, 'frame_settings',
                                                   output_qos)
        self._debug_pubs = None
        if get('publish_debug'):
            from std_msgs.msg import Float64
            self._debug_pubs = tuple(self.create_publisher(Float64, f'~/debug/{name}', 10)
                                     for name in ('processing_time_ms', 'pipeline_latency_ms'))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.health = FrameHealth(window_s=get('health_window'), stale_s=get('stale_timeout'))
        self.counts = self.health.counts
        self._latencies_ms = []
        self._stage_history, self._stages = [], {}
        self._last_rate = (time.monotonic(), 0)
        self._output_qos = output_qos
        self._made = [pub for _, pub in self._outputs] + list(self._compressed.values()) + [
            pub for pub in (self._obstacles_pub, self._label_info_pub, self._settings_pub,
                            self.diagnostics_pub) if pub is not None] + list(
            self._debug_pubs or ())
        # last: the parameter callbacks need the detector, and not the class table's declaration
        self._param_callbacks = [
            (self.remove_pre_set_parameters_callback, self._complete_parameters),
            (self.remove_on_set_parameters_callback, self._validate_parameters),
            (self.remove_post_set_parameters_callback, self._apply_parameters)]
        self.add_pre_set_parameters_callback(self._complete_parameters)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f'{info.backbone} ({info.source}, trained on {info.trained_on or "unknown"}) on '
            f'{self.detector.device} in '
            f'{self.detector.precision_name} ({self.detector.runtime}: '
            f'{self.detector.runtime_reason}), scorer '
            f'{self.detector.scorer.name}, threshold {self.detector.threshold:g} '
            f'({self.detector.threshold_source}), input '
            f'{self.detector.input_size_hw[1]}x{self.detector.input_size_hw[0]}')
        for note in self.detector.notes + [self.detector.settings.uncalibrated]:
            if note:
                self.get_logger().warning(note)

    def _activate(self) -> None:
        """The subscriptions (image, camera_info), the diagnostics timer and the worker."""
        get = self._get
        input_qos = QoSProfile(depth=get('queue_depth'), history=HistoryPolicy.KEEP_LAST,
                               reliability=qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        image_sub = self.create_subscription(Image, 'image', self._on_image, input_qos)
        self._active = [image_sub]
        if get('subscribe_compressed'):
            self._active.append(self.create_subscription(
                CompressedImage, 'image/compressed', self._on_compressed, input_qos))
        self._subscribe_camera_info(image_sub.topic_name, input_qos, self._output_qos)
        self._active.append(self.create_timer(get('diagnostics_period'),
                                              self._publish_diagnostics))
        with self._cond:
            self._running = True
        self._start_worker()

    def _deactivate(self) -> None:
        """Stop taking frames: the worker ends after its frame, subscriptions and timer go."""
        self._stop_worker(getattr(self, '_worker_grace_s', 5.0))
        for entity in getattr(self, '_active', []):
            destroy = self.destroy_timer if hasattr(entity, 'timer_period_ns') else \
                self.destroy_subscription
            destroy(entity)
        if getattr(self, '_camera_info_pub', None) is not None:
            self.destroy_publisher(self._camera_info_pub)
            self._camera_info_pub = None
        self._active = []
        with self._cond:
            self._slot = None

    def _cleanup(self) -> None:
        """Release the model and the publishers (a managed node's cleanup)."""
        for remove, callback in self._param_callbacks:
            remove(callback)
        self._param_callbacks = []
        for publisher in self._made:
            self.destroy_publisher(publisher)
        self._made = []
        self.detector = None

    # -- parameters, declared once from PARAMS --------------------------------------------------
    def _declare(self, param) -> None:
        """Declare ``param``; an integer given for a double is taken as a double, and a value of
        the wrong type is one ConfigError that names the parameter."""
        overrides = getattr(self, '_parameter_overrides', {})
        given = overrides.get(param.name)
        if given is not None and isinstance(param.default, float) and \
                given.type_ == Parameter.Type.INTEGER:
            overrides[param.name] = Parameter(param.name, Parameter.Type.DOUBLE,
                                              float(given.value))
        try:
            self.declare_parameter(param.name, param.default, descriptor(param))
        except ParameterException as exc:  # wrong type, or out of its range
            value = given.value if given is not None else param.default
            raise ConfigError(f'parameter {param.name!r}: {value!r} is not accepted '
                              f'({type(exc).__name__}); expected '
                              f'{_KINDS[type(param.default)]}{_range_text(param)}') from None

    def _publish_class_table(self, info) -> None:
        """The class names of ``semantic`` (trainId -> name, 255 void) for consumers that do not
        hard-code Cityscapes: the read-only parameter ``class_names`` always, and
        ``vision_msgs/LabelInfo`` on ``label_info`` (latched: transient local) where
        vision_msgs is installed."""
        if not self.has_parameter('class_names'):  # (a managed node configured again)
            self.declare_parameter('class_names', list(info.class_names), ParameterDescriptor(
                description='the class of each trainId of semantic (255: void)',
                read_only=True))
        self._label_info_pub = None
        if vision_msgs_available():
            from vision_msgs.msg import LabelInfo
            latched = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            self._label_info_pub = self.create_publisher(LabelInfo, 'label_info', latched)
            table = label_info_msg(info.class_names)
            table.header.stamp = self.get_clock().now().to_msg()
            self._label_info_pub.publish(table)

    def _check_unknown_parameters(self) -> None:
        """A parameter given for this node that it does not have: refused when it is close to
        one of its own (a misspelt ``thresold`` would otherwise be ignored in silence), else
        warned about (a params file's ``/**`` section may hold other nodes' settings)."""
        import difflib
        names = [param.name for param in PARAMS]
        for given in sorted(getattr(self, '_parameter_overrides', {})):
            if self.has_parameter(given):
                continue
            close = difflib.get_close_matches(given, names, n=1, cutoff=0.75)
            if close:
                raise ConfigError(f'parameter {given!r} is not one of this node\'s: did you '
                                  f'mean {close[0]!r}? (check the -p values and the params '
                                  f'file)')
            self.get_logger().warning(f'parameter {given!r} is not one of this node\'s and is '
                                      f'ignored (ros2 param list shows those it has)')

    def _get(self, name):
        return self.get_parameter(name).value

    def _complete_parameters(self, params):
        """An integer for a parameter that is a number is taken as one (as at start-up). A
        scorer change without a threshold in the same call takes ``threshold: auto``
        when the threshold was a number: a number is on the old scorer's scale (msp's 0.55
        flags nothing on maxlogit's, maxlogit's -2.1 every pixel on msp's)."""
        doubles = {param.name for param in PARAMS if isinstance(param.default, float)}
        params = [Parameter(p.name, Parameter.Type.DOUBLE, float(p.value))
                  if p.name in doubles and p.type_ == Parameter.Type.INTEGER else p
                  for p in params]  # `ros2 param set ... temperature 2`, as at start-up
        names = {p.name for p in params}
        if 'scorer' in names and 'threshold' not in names and \
                self.detector.threshold_setting != 'auto':
            scorer = next(p.value for p in params if p.name == 'scorer')
            if scorer != self.detector.scorer.name:
                params = list(params) + [Parameter('threshold', Parameter.Type.STRING, 'auto')]
                self._threshold_reset = self.detector.threshold
        return params

    def _validate_parameters(self, params):
        values = {p.name: p.value for p in params}
        scorer = values.get('scorer', self.detector.scorer.name)
        temperature = values.get('temperature', self._get('temperature'))
        try:
            if temperature:  # for every scorer that takes one, whichever is active now
                check_temperature(float(temperature))
            new_scorer = make_scorer(scorer, self.detector.info,
                                     temperature=temperature or None)
            if values.get('mask_region', 'all') not in MASK_REGIONS:
                raise ConfigError(f'mask_region must be one of {", ".join(MASK_REGIONS)}')
            threshold = parse_threshold(values['threshold']) if 'threshold' in values else \
                self.detector.threshold_setting
            if threshold != 'auto':
                new_scorer.check_threshold(threshold)
        except AnomsegError as exc:
            self._threshold_reset = None
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params):
        names = {p.name for p in params}
        change = {}
        if names & {'scorer', 'temperature'}:
            change.update(scorer=self._get('scorer'),
                          temperature=self._get('temperature') or None)
        if 'threshold' in names:
            change['threshold'] = self._get('threshold')
        if 'mask_region' in names:
            change['mask_region'] = self._get('mask_region')
        if change:  # one swap: no frame sees the new scorer with the old threshold
            self.detector.configure(**change)
        if 'min_obstacle_area' in names:
            self.min_obstacle_area = self._get('min_obstacle_area')
        reset, self._threshold_reset = self._threshold_reset, None
        if reset is not None:
            self.get_logger().warning(f'threshold {reset:g} was for the previous scorer\'s '
                                      f'scale: it is "auto" again')
        self.get_logger().info(f'now scorer {self.detector.scorer.name}, threshold '
                               f'{self.detector.threshold:g} '
                               f'({self.detector.threshold_source})')
        if self.detector.settings.uncalibrated:
            self.get_logger().warning(self.detector.settings.uncalibrated)

    # -- input: keep only the newest frame --------------------------------------------------
    def _subscribe_camera_info(self, image_topic: str, qos, output_qos) -> None:
        """The camera's ``camera_info`` beside its image topic (image_transport's convention:
        ``/camera/image_raw`` -> ``/camera/camera_info``), republished with each output on
        ``camera_info``; where that is the camera's own topic (the node in the camera's
        namespace), on ``~/camera_info`` instead: the node never publishes on the camera's."""
        topic = posixpath.join(posixpath.dirname(image_topic), 'camera_info')
        ours = 'camera_info'
        if self.resolve_topic_name(ours) == topic:
            ours = '~/camera_info'
        self._camera_info_pub = self.create_publisher(CameraInfo, ours, output_qos)
        self.camera_info_topics = (topic, self._camera_info_pub.topic_name)
        if ours != 'camera_info':
            self.get_logger().info(f'the camera\'s camera_info is {topic}, beside its image: '
                                   f'it is republished, re-stamped with each frame, on '
                                   f'{self._camera_info_pub.topic_name}')
        self._active.append(self.create_subscription(CameraInfo, topic, self._on_camera_info,
                                                     qos))

    def _on_camera_info(self, msg):
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
            self._camera_info = None
            self._camera_info_problem('rejected', f'camera_info refused: {problem}; it is not '
                                                  f'republished')
            return
        self._camera_info = (msg, time.monotonic())

    def _on_image(self, msg):
        self._offer(msg, image_msg_to_rgb)

    def _on_compressed(self, msg):
        self._offer(msg, compressed_msg_to_rgb)

    def _has_listeners(self) -> bool:
        publishers = [pub for _, pub in self._outputs] + list(self._compressed.values()) + \
            [self._settings_pub, self._camera_info_pub]
        if self._obstacles_pub is not None:
            publishers.append(self._obstacles_pub)
        return any(pub.get_subscription_count() for pub in publishers)

    def _offer(self, msg, decode):
        self.health.count('received')
        if self.lazy and not self._has_listeners():
            self.health.count('skipped')  # nobody listens: no network, no decoding
            return
        with self._cond:
            if self._slot is not None:
                self.health.count('dropped')
            self._slot = (msg, decode, time.monotonic())
            self._cond.notify()

    # -- processing ---------------------------------------------------------------------------
    def _start_worker(self) -> None:
        self._worker_error = ''
        self._worker = threading.Thread(target=self._work, name='anomseg_worker', daemon=True)
        self._worker.start()

    def _work(self):
        try:
            while True:
                with self._cond:
                    while self._running and self._slot is None:
                        self._cond.wait()
                    if not self._running:
                        return
                    frame, self._slot = self._slot, None
                    self._in_work_since = frame[2]
                try:
                    self._handle(*frame)
                finally:
                    self._in_work_since = None
        except BaseException as exc:  # noqa: B902 - said in /diagnostics, then restarted
            self._worker_error = f'{type(exc).__name__}: {exc}'
            self.get_logger().fatal(f'the worker thread stopped: {self._worker_error}\n'
                                    f'{traceback.format_exc()}')

    def _handle(self, msg, decode, arrived: float) -> None:
        """Decode, run and publish one frame; every exception is counted with its reason."""
        taken = time.monotonic()
        try:
            image = decode(msg, max_pixels=self.max_pixels)
        except Exception as exc:  # AnomsegError, and whatever a decoder raises on odd data
            self._count_lost('rejected', _reason(exc))
            return
        decoded = time.monotonic()
        try:
            self._process(msg.header, image)
        except NonFiniteScores as exc:
            self.health.count('nonfinite')
            self._count_lost('failed', str(exc))
            return
        except Exception as exc:  # keep the node alive; say why the frame was lost
            self._count_lost('failed', _reason(exc))
            return
        self.health.count('processed')
        self._latencies_ms = (self._latencies_ms + [(time.monotonic() - arrived) * 1e3])[-100:]
        self._stage_history = (self._stage_history + [{
            'wait': 1e3 * (taken - arrived), 'decode': 1e3 * (decoded - taken),
            **self._stages}])[-100:]
        if self._debug_pubs is not None:
            self._publish_debug(msg.header, taken)

    def _publish_debug(self, header, taken: float) -> None:
        from std_msgs.msg import Float64
        stamp_ns = stamp_to_ns(header.stamp)
        processing, latency = self._debug_pubs
        processing.publish(Float64(data=(time.monotonic() - taken) * 1e3))
        latency.publish(Float64(data=(self.get_clock().now().nanoseconds - stamp_ns) / 1e6))

    def _count_lost(self, kind: str, reason: str) -> None:
        """Count a lost frame and warn, at most once per ``WARN_PERIOD_S`` per kind.

        (Throttled by hand: rclpy's own throttling refuses messages that change between calls.)
        """
        self.health.count(kind)
        now = time.monotonic()
        if now - self._last_warning.get(kind, -WARN_PERIOD_S) >= WARN_PERIOD_S:
            self._last_warning[kind] = now
            text = f'frame {kind} ({self.counts[kind]} so far): {reason}'
            # one call site per severity: rclpy refuses a call site whose severity changes
            if kind == 'rejected':
                self.get_logger().warning(text)
            else:
                self.get_logger().error(text)

    def _process(self, header, image: np.ndarray):
        detection = self.detector.predict(image)
        outputs_started = time.monotonic()
        detection.check_finite('the frame is not published')
        if self._settings_pub.get_subscription_count():
            self._settings_pub.publish(settings_msg(detection.settings, header))
        for output, publisher in self._outputs:
            compressed = self._compressed.get(output.name)
            wanted = publisher.get_subscription_count()
            wanted_compressed = compressed is not None and compressed.get_subscription_count()
            if not (wanted or wanted_compressed):
                continue  # rendering costs: only for outputs someone reads
            array = output.render(image, detection)
            if wanted:
                publisher.publish(array_to_image_msg(array, output.encoding, header))
            if wanted_compressed:
                fmt, data = compress(array, output.encoding, output.compression)
                compressed.publish(CompressedImage(header=header, format=fmt, data=data))
        if self._obstacles_pub is not None and self._obstacles_pub.get_subscription_count():
            obstacles = find_obstacles(detection.mask, detection.score_map,
                                       min_area=self.min_obstacle_area)
            ids = None
            if self.tracker is not None:  # only those seen k of the last n frames
                tracks = self.tracker.update(obstacles)
                obstacles, ids = [t.obstacle for t in tracks], [t.id for t in tracks]
            self._obstacles_pub.publish(obstacles_to_detections(obstacles, header, ids))
        self._republish_camera_info(header, image.shape[:2])
        self._stages = {**detection.timings_ms,
                        'outputs': 1e3 * (time.monotonic() - outputs_started)}

    def _republish_camera_info(self, header, size_hw) -> None:
        """The camera's camera_info, re-stamped with the frame's header, when it describes
        frames of this size and is recent; else it is held back, counted and warned about."""
        if self._camera_info is None:
            return
        info, arrived = self._camera_info
        age = time.monotonic() - arrived
        if (info.height, info.width) != tuple(size_hw):
            self._camera_info_problem(
                'mismatched', f'camera_info is for {info.width}x{info.height} images, the frames '
                              f'are {size_hw[1]}x{size_hw[0]}: it is not republished (fix the '
                              f'camera driver\'s calibration or its resolution)')
        elif age > self.camera_info_max_age:
            self._camera_info_problem(
                'stale', f'the newest camera_info is {age:.1f} s old (camera_info_max_age '
                         f'{self.camera_info_max_age:g} s): it is not republished')
        else:
            info.header = header
            self._camera_info_pub.publish(info)
            self.camera_info_counts['published'] += 1

    def _camera_info_problem(self, kind: str, text: str) -> None:
        self.camera_info_counts[kind] += 1
        now = time.monotonic()
        key = f'camera_info_{kind}'
        if now - self._last_warning.get(key, -WARN_PERIOD_S) >= WARN_PERIOD_S:
            self._last_warning[key] = now
            self.get_logger().warning(f'{text} ({self.camera_info_counts[kind]} so far)')

    # -- diagnostics --------------------------------------------------------------------------
    def _publish_diagnostics(self):
        alive = self._worker is not None and self._worker.is_alive()
        with self._cond:
            waiting = [t for t in (self._in_work_since, self._slot and self._slot[2])
                       if t is not None]
        level, message = self.health.level(worker_alive=alive, worker_error=self._worker_error,
                                           pending_since=min(waiting) if waiting else None)
        uncalibrated = self.detector.settings.uncalibrated
        if uncalibrated and level == OK:
            level, message = WARN, f'{message}; {uncalibrated}'
        counts = self.health.snapshot()
        now, processed = time.monotonic(), counts['processed']
        then, processed_then = self._last_rate
        self._last_rate = (now, processed)
        rate_hz = (processed - processed_then) / max(now - then, 1e-9)
        latencies = self._latencies_ms
        latency = statistics.median(latencies) if latencies else float('nan')
        status = DiagnosticStatus(name=f'{self.get_fully_qualified_name()}: pipeline',
                                  hardware_id=str(self.detector.device),
                                  level=bytes([level]), message=message)
        recent = self.health.recent()
        values = {
            'latency_ms_median': f'{latency:.1f}', 'output_rate_hz': f'{rate_hz:.2f}',
            **stage_medians(self._stage_history),
            **{f'frames_{k}': str(v) for k, v in counts.items()},
            **{f'recent_{k}': str(recent[k]) for k in ('rejected', 'failed', 'nonfinite')},
            **{f'camera_info_{k}': str(v) for k, v in self.camera_info_counts.items()},
            'camera_info_in': self.camera_info_topics[0],
            'camera_info_out': self.camera_info_topics[1],
            'worker_alive': str(alive).lower(), 'worker_restarts': str(self.worker_restarts),
            'backbone': self.detector.info.backbone,
            **{key: str(value) for key, value in self.detector.settings.describe().items()},
            'precision': self.detector.precision_name, 'runtime': self.detector.runtime,
            'weights': self.detector.info.source,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)
        if not alive and self._running:  # said above as ERROR; now work again
            self.get_logger().error('restarting the worker thread')
            self.worker_restarts += 1
            self._start_worker()

    def spin_until(self, stop: threading.Event, *, step_s: float = 0.1) -> int:
        """Serve the node's callbacks until ``stop`` is set; the exit code (1 when a callback
        raised, which is logged with its traceback)."""
        from rclpy.executors import SingleThreadedExecutor
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(self)
        try:
            while not stop.is_set():
                executor.spin_once(timeout_sec=step_s)
        except ExternalShutdownException:
            return 0
        except Exception as exc:  # noqa: B902 - a callback's bug: said, then a clean stop
            self.get_logger().fatal(f'stopping: {type(exc).__name__}: {exc}\n'
                                    f'{traceback.format_exc()}')
            return 1
        finally:
            executor.remove_node(self)
        return 0

    def close(self, *, worker_grace_s: float = 5.0) -> None:
        """Stop the worker (waiting at most ``worker_grace_s`` for its frame), destroy the
        node and shut rclpy down, which flushes the ROS log."""
        self._worker_grace_s = worker_grace_s
        try:
            self.destroy_node()
        finally:
            rclpy.try_shutdown(context=self.context)

    def _stop_worker(self, grace_s: float) -> None:
        with self._cond:
            self._running = False
            self._cond.notify()
        if self._worker is not None:
            self._worker.join(timeout=grace_s)

    def destroy_node(self):
        self._stop_worker(getattr(self, '_worker_grace_s', 5.0))
        handler = getattr(self, '_log_handler', None)
        if handler is not None:
            logging.getLogger('anomseg_ros').removeHandler(handler)
        return super().destroy_node()


class DetectorNode(_Detector, Node):
    """Runs the anomseg pipeline on every frame it can keep up with (configured and active
    from construction)."""

    def __init__(self, **kwargs):
        self._init_state()
        super().__init__('anomseg_detector', **kwargs)
        self._start_logging()
        try:
            self._declare_parameters()
            self._configure()
            self._activate()
        except BaseException:
            # a refused setting: take down what DDS already holds (participant, publishers)
            # now, not in the interpreter's exit, where a half-built node could hang it
            self.destroy_node()
            raise


class ManagedDetectorNode(_Detector, LifecycleNode):
    """The detector as a managed (lifecycle) node, as nav2 and Autoware bring nodes up:
    unconfigured at start; ``configure`` loads the model and makes the publishers (a refused
    setting fails the transition with its reason); ``activate`` subscribes and starts the
    worker; ``deactivate`` stops taking frames; ``cleanup`` releases the model."""

    def __init__(self, **kwargs):
        self._init_state()
        super().__init__('anomseg_detector', **kwargs)
        self._start_logging()
        try:
            self._declare_parameters()
        except BaseException:
            self.destroy_node()
            raise

    def _transition(self, name, step) -> TransitionCallbackReturn:
        try:
            step()
        except AnomsegError as exc:
            self.get_logger().error(f'{name} failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state) -> TransitionCallbackReturn:
        return self._transition('configure', self._configure)

    def on_activate(self, state) -> TransitionCallbackReturn:
        return self._transition('activate', self._activate)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        return self._transition('deactivate', self._deactivate)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        return self._transition('cleanup', self._cleanup)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        def shut_down():
            self._deactivate()
            self._cleanup()
        return self._transition('shutdown', shut_down)

    def _publish_diagnostics(self):
        if self.detector is not None:
            super()._publish_diagnostics()


STAGES = ('wait', 'decode', 'forward', 'score', 'resize', 'outputs')


def stage_medians(history) -> dict:
    """``stage_ms_<stage>``: the median milliseconds of each stage of a frame's path through
    the node over the last frames (wait: in the slot; decode; forward: preprocess and network;
    score: scorer and labels; resize: back to the camera's size and the mask; outputs:
    rendering, messages and publishing)."""
    return {f'stage_ms_{stage}': f'{statistics.median(h[stage] for h in history):.1f}'
            for stage in STAGES if history and all(stage in h for h in history)}


def settings_msg(settings, header) -> DiagnosticArray:
    """The settings that produced one frame's outputs (``frame_settings``), stamped with the
    frame's header, so a consumer can check each mask against its own scorer and threshold."""
    status = DiagnosticStatus(name='anomseg frame settings', level=DiagnosticStatus.OK)
    status.values = [KeyValue(key=key, value=str(value))
                     for key, value in settings.describe().items()]
    return DiagnosticArray(header=header, status=[status])


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if isinstance(exc, AnomsegError) else f'{type(exc).__name__}: {text or "-"}'


_KINDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}


def _range_text(param) -> str:
    if param.range is None:
        return ''
    return f' from {param.range[0]:g} to {param.range[1]:g}'


def start_node(args=None, *, managed: bool = False):
    """rclpy initialised (leaving the signals to ``process``) and the node built (a
    ``ManagedDetectorNode``, unconfigured, with ``managed``); a start-up
    that cannot go on prints one line that says why and raises ``SystemExit`` (2: the ROS
    arguments, 1: a setting or the weights)."""
    from rclpy.signals import SignalHandlerOptions
    applied = configure_dds()
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except Exception as exc:  # a params file rcl cannot parse, a bad --ros-args
        print(f'anomseg_detector: cannot start: the ROS arguments were refused (check the '
              f'-p values and the YAML of --params-file): '
              f'{first_line(exc, limit=300, empty=type(exc).__name__)}', file=sys.stderr)
        raise SystemExit(2) from None
    try:
        node = ManagedDetectorNode() if managed else DetectorNode()
    except AnomsegError as exc:
        print(f'anomseg_detector: cannot start: {exc}', file=sys.stderr)
        rclpy.try_shutdown()
        raise SystemExit(1) from None
    if applied:
        node.get_logger().info(f'DDS: {applied} (set FASTDDS_DEFAULT_PROFILES_FILE to use a '
                               f'profile of your own)')
    return node
