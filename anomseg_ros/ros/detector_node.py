"""The live detector node ``anomseg_detector``: camera images in; semantic labels, anomaly score,
obstacle mask, overlay and the obstacles as objects out, with the input's header so they line
up in RViz. One node serves one camera, or several (``cameras``) through one network: each
camera's newest frames are batched into one forward pass and each gets its own outputs
(``camera.py``).

Frames are handed to one worker thread through a slot per camera (``worker.py``, ROS-free):
when frames come faster than the network runs, the newest one wins and the others are counted
as dropped; there is no backlog. Nothing a frame can raise ends the worker: a frame that
cannot be decoded is counted as rejected, one that fails in the network or scores non-finite
as failed, each with a throttled warning that says why; and a worker that stopped all the
same is an ERROR in /diagnostics and is started again. Each batch is processed with one
snapshot of the settings (``Settings``) and the snapshot is published beside its outputs
(``frame_settings``). The process around the node (signals, start-up, exit) is
``anomseg_ros.ros.process``.
"""
import collections
import logging
import sys
import threading
import time
import traceback

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, qos_profile_sensor_data, ReliabilityPolicy
from rclpy.qos import DurabilityPolicy

from anomseg_ros.errors import AnomsegError, ConfigError, first_line, NonFiniteScores
from anomseg_ros.obstacles import MASK_REGIONS, ObstacleTracker
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector, make_scorer, parse_threshold
from anomseg_ros.ros.camera import CameraIO, parse_cameras, settings_msg, stage_medians, status
from anomseg_ros.ros.conversions import label_info_msg, vision_msgs_available
from anomseg_ros.ros.dds import configure_dds
from anomseg_ros.ros.health import ERROR, FrameHealth, OK, WARN
from anomseg_ros.ros.outputs import IMAGE_OUTPUTS, OPTIONAL_OUTPUTS
from anomseg_ros.ros.parameters import descriptor, PARAMS
from anomseg_ros.ros.worker import FrameWorker
from anomseg_ros.scoring.base import check_temperature

__all__ = ['DetectorNode', 'ManagedDetectorNode', 'settings_msg', 'stage_medians', 'start_node']


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
        self.worker = None
        self.cameras = []
        self._threshold_reset = None
        self._made = []  # the node's own publishers of the current configuration
        self._param_callbacks = []
        self._active = []
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
        cameras = parse_cameras(get('cameras'))  # refused before the model loads
        if get('persistence_k') > get('persistence_n'):
            raise ConfigError(f'persistence_k ({get("persistence_k")}) must be at most '
                              f'persistence_n ({get("persistence_n")})')
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
        outputs = [output for output in IMAGE_OUTPUTS + OPTIONAL_OUTPUTS
                   if get(f'publish.{output.name}')]
        obstacles = bool(get('publish.obstacles') and vision_msgs_available())
        if get('publish.obstacles') and not obstacles:
            self.get_logger().info('obstacles (vision_msgs/Detection2DArray) are not published: '
                                   'vision_msgs is not installed (sudo apt install '
                                   'ros-$ROS_DISTRO-vision-msgs); obstacle_mask has them')
        self.cameras = [
            CameraIO(self, index, name, topic, outputs=outputs,
                     compressed=get('publish_compressed'), obstacles=obstacles,
                     debug=get('publish_debug'), qos=output_qos,
                     health=FrameHealth(window_s=get('health_window'),
                                        stale_s=get('stale_timeout')),
                     tracker=ObstacleTracker(get('persistence_k'), get('persistence_n'))
                     if get('persistence_k') else None)
            for index, (name, topic) in enumerate(cameras)]
        self._publish_class_table(info)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._output_qos = output_qos
        self._made = [pub for pub in (self._label_info_pub, self.diagnostics_pub)
                      if pub is not None]
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
            f'{self.detector.input_size_hw[1]}x{self.detector.input_size_hw[0]}'
            + (f', {len(self.cameras)} cameras in one batch: '
               f'{", ".join(c.name for c in self.cameras)}' if len(self.cameras) > 1 else ''))
        for note in self.detector.notes + [self.detector.settings.uncalibrated]:
            if note:
                self.get_logger().warning(note)

    def _activate(self) -> None:
        """The subscriptions (images, camera_info), the diagnostics timer and the worker."""
        get = self._get
        input_qos = QoSProfile(depth=get('queue_depth'), history=HistoryPolicy.KEEP_LAST,
                               reliability=qos_profile_sensor_data.reliability,
                               durability=qos_profile_sensor_data.durability)
        for camera in self.cameras:
            camera.subscribe(input_qos, self._output_qos,
                             compressed=get('subscribe_compressed'),
                             on_frame=lambda msg, decode, index: self._offer(msg, decode, index))
        self._active = [self.create_timer(get('diagnostics_period'), self._publish_diagnostics)]
        self.worker = FrameWorker(lambda batch: self._handle_batch(batch),
                                  cameras=len(self.cameras), batch_wait_s=get('batch_wait'),
                                  on_fatal=self._on_worker_fatal)
        self.worker.start()

    def _deactivate(self) -> None:
        """Stop taking frames: the worker ends after its batch, subscriptions and timer go."""
        self._stop_worker(getattr(self, '_worker_grace_s', 5.0))
        for timer in self._active:
            self.destroy_timer(timer)
        self._active = []
        for camera in self.cameras:
            camera.unsubscribe()

    def _cleanup(self) -> None:
        """Release the model and the publishers (a managed node's cleanup)."""
        for remove, callback in self._param_callbacks:
            remove(callback)
        self._param_callbacks = []
        for camera in self.cameras:
            camera.destroy()
        self.cameras = []
        for publisher in self._made:
            self.destroy_publisher(publisher)
        self._made = []
        self.detector = None

    @property
    def counts(self) -> collections.Counter:
        """The frame counters of all cameras together."""
        total = collections.Counter()
        for camera in self.cameras:
            total.update(camera.health.snapshot())
        return total

    @property
    def worker_restarts(self) -> int:
        return self.worker.restarts if self.worker is not None else 0

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
        """The parameter's value; one that came unset (rcl cannot type an empty YAML list, so
        a params file's ``cameras: []`` arrives as no value) is its declared default."""
        value = self.get_parameter(name).value
        return _DEFAULTS.get(name) if value is None else value

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

    # -- input: each camera's newest frame --------------------------------------------------
    def _offer(self, msg, decode, camera: int = 0):
        health = self.cameras[camera].health
        health.count('received')
        if self.lazy and not self.cameras[camera].has_listeners():
            health.count('skipped')  # nobody listens: no network, no decoding
            return
        if self.worker is not None and self.worker.running and \
                self.worker.offer(camera, (msg, decode)):
            health.count('dropped')

    # -- processing ---------------------------------------------------------------------------
    def _on_worker_fatal(self, error: str, trace: str) -> None:
        self.get_logger().fatal(f'the worker thread stopped: {error}\n{trace}')

    def _handle_batch(self, batch) -> None:
        """Decode the batch's frames, run them through the network together and publish each
        camera's outputs; every exception is counted, with its reason, on its camera."""
        taken = time.monotonic()
        frames = []  # (camera, header, image, arrived, decode ms)
        for pending in batch:
            (msg, decode), camera = pending.frame, self.cameras[pending.camera]
            started = time.monotonic()
            try:
                image = decode(msg, max_pixels=self.max_pixels)
            except Exception as exc:  # AnomsegError, and whatever a decoder raises on odd data
                self._count_lost(camera, 'rejected', _reason(exc))
                continue
            frames.append((camera, msg.header, image, pending.arrived,
                           1e3 * (time.monotonic() - started)))
        if not frames:
            return
        try:
            detections = self.detector.predict_batch([frame[2] for frame in frames])
        except Exception as exc:  # keep the node alive; say why the frames were lost
            for frame in frames:
                self._count_lost(frame[0], 'failed', _reason(exc))
            return
        for (camera, header, image, arrived, decode_ms), detection in zip(frames, detections):
            outputs_started = time.monotonic()
            try:
                detection.check_finite('the frame is not published')
                camera.publish(header, image, detection, min_obstacle_area=self.min_obstacle_area,
                               camera_info_max_age=self.camera_info_max_age)
            except NonFiniteScores as exc:
                camera.health.count('nonfinite')
                self._count_lost(camera, 'failed', str(exc))
                continue
            except Exception as exc:  # keep the node alive; say why the frame was lost
                self._count_lost(camera, 'failed', _reason(exc))
                continue
            camera.record(arrived, {'wait': 1e3 * (taken - arrived), 'decode': decode_ms,
                                    **detection.timings_ms,
                                    'outputs': 1e3 * (time.monotonic() - outputs_started)})
            camera.publish_debug(header, taken)

    def _count_lost(self, camera, kind: str, reason: str) -> None:
        """Count a lost frame of ``camera`` and warn, at most once per 5 s per kind."""
        camera.health.count(kind)
        camera.warn(kind, f'frame {kind} ({camera.health.counts[kind]} so far): {reason}',
                    error=kind != 'rejected')

    # -- diagnostics --------------------------------------------------------------------------
    def _publish_diagnostics(self):
        """One status per node in diagnostic_updater's form (``<node>: pipeline``), with the
        camera's counters; with several cameras, the model's status and one per camera
        (``<node>: camera <name>``)."""
        worker = self.worker
        alive = worker is not None and worker.alive
        pending = worker.pending_since() if worker is not None else None
        error = worker.error if worker is not None else ''
        node = self.get_fully_qualified_name()
        hardware = str(self.detector.device)
        model = {
            'worker_alive': str(alive).lower(), 'worker_restarts': str(self.worker_restarts),
            'backbone': self.detector.info.backbone,
            **{key: str(value) for key, value in self.detector.settings.describe().items()},
            'precision': self.detector.precision_name, 'runtime': self.detector.runtime,
            'weights': self.detector.info.source, 'cameras': str(len(self.cameras)),
        }
        uncalibrated = self.detector.settings.uncalibrated
        statuses = []
        for camera in self.cameras:
            level, message = camera.health.level(worker_alive=alive, worker_error=error,
                                                 pending_since=pending)
            if uncalibrated and level == OK:
                level, message = WARN, f'{message}; {uncalibrated}'
            statuses.append((camera, level, message))
        msg = DiagnosticArray()
        if len(self.cameras) == 1:
            camera, level, message = statuses[0]
            msg.status = [status(f'{node}: pipeline', level, message, hardware,
                                 {**camera.values(), **model})]
        else:
            worst = max(level for _, level, _ in statuses)
            troubled = [f'{camera.name}: {message}' for camera, level, message in statuses
                        if level == worst and worst != OK]
            message = '; '.join(troubled) if troubled else statuses[0][2]
            if not alive:
                worst, message = ERROR, f'worker thread stopped ({error or "no reason given"})'
            msg.status = [status(f'{node}: pipeline', worst, message, hardware, {
                **{f'frames_{k}': str(v) for k, v in self.counts.items()}, **model})] + [
                status(f'{node}: camera {camera.name}', level, message, hardware,
                       camera.values()) for camera, level, message in statuses]
        msg.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(msg)
        if worker is not None and not alive and worker.running:  # said above; now work again
            self.get_logger().error('restarting the worker thread')
            worker.restart()

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
        if self.worker is not None:
            self.worker.stop(grace_s)

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
        """A refused setting fails the transition (the node stays where it was); anything else
        is an error (the node goes to its error state); either is logged with its reason, never
        only answered ``success: false``."""
        try:
            step()
        except AnomsegError as exc:
            self.get_logger().error(f'{name} failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:
            self.get_logger().error(f'{name} failed: {_reason(exc)}\n{traceback.format_exc()}')
            return TransitionCallbackReturn.ERROR
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


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text if isinstance(exc, AnomsegError) else f'{type(exc).__name__}: {text or "-"}'


_DEFAULTS = {param.name: param.default for param in PARAMS}
_KINDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
          list: 'a list of strings'}


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
