"""Talking to a running detector node over DDS: start it as a process, send frames, collect
every output of a frame by its header stamp; ``live_detector()`` does the whole sequence for
``anomseg demo``, the bag replay and the benchmark. Frames are never matched by arrival order,
only by stamp."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Iterable, Iterator, List, Optional, Set

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter as RclpyParameter
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from anomseg_ros.errors import AnomsegError
from anomseg_ros.data.messages import ns_to_sec_nanosec, stamp_to_ns
from anomseg_ros.ros.conversions import array_to_image_msg
from anomseg_ros.ros.dds import dds_defaults
from anomseg_ros.ros.outputs import OUTPUTS

PROBE_STAMPS_NS = 1000  # stamps 1..999 ns are reserved for start-up probes


class NodeStartError(AnomsegError):
    """The detector process exited or never came up."""


class NodeProcess:
    """``python -m anomseg_ros.detector`` in a child process, stopped with SIGINT on exit."""

    def __init__(self, *, namespace: str = '', params: Optional[Dict[str, object]] = None,
                 log_path: Optional[str] = None, extra_args: Iterable[str] = ()):
        self.namespace = namespace
        self.params = dict(params or {})
        self.log_path = log_path
        self.extra_args = list(extra_args)
        self.process: Optional[subprocess.Popen] = None

    def command(self):
        args = [sys.executable, '-m', 'anomseg_ros.detector', '--ros-args']
        if self.namespace:
            args += ['-r', f'__ns:={self.namespace}']
        for name, value in self.params.items():
            args += ['-p', f'{name}:={_param_literal(value)}']
        return args + self.extra_args

    def __enter__(self) -> 'NodeProcess':
        log = open(self.log_path, 'w') if self.log_path else subprocess.DEVNULL
        env = {**os.environ, **dds_defaults(localhost_only=True), 'PYTHONUNBUFFERED': '1'}
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        env=env)
        if log is not subprocess.DEVNULL:
            log.close()
        return self

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise NodeStartError(f'the detector node exited with code '
                                 f'{self.process.returncode}{self.log_tail()}')

    def log_tail(self) -> str:
        """'; its log PATH ends: LINE' (what the node said last), or '' without a log."""
        if not self.log_path:
            return ''
        try:
            with open(self.log_path, errors='replace') as log:
                lines = [line.strip() for line in log if line.strip()]
        except OSError:
            lines = []
        last = lines[-1][:300] if lines else '(nothing yet)'
        return f'; its log {self.log_path} ends: {last}'

    def stop(self, timeout: float = 15.0) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __exit__(self, *exc):
        self.stop()


def _param_literal(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, str):
        return f"'{value}'" if value == '' else value
    return repr(value)


class DetectorClient(Node):
    """Publishes frames to ``<namespace>/image`` (or ``image_topic``) and gathers the node's
    outputs per stamp. ``lost_frames()`` lists the frames sent whose outputs never came (lost
    inside DDS, dropped by the node, or failed there); ``node_counters()`` reads what the node
    says it received."""

    def __init__(self, namespace: str = '', *, outputs: Iterable[str] = OUTPUTS,
                 name: str = 'anomseg_client', image_topic: str = 'image'):
        super().__init__(name, namespace=namespace or '/')
        self.outputs = tuple(outputs)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, image_topic, reliable)
        self._received: Dict[int, Dict[str, Image]] = {}
        self._abandoned: Set[int] = set()
        self._sent: Set[int] = set()
        self._answered: Set[int] = set()
        self._cond = threading.Condition()
        self._diagnostics: Optional[DiagnosticArray] = None
        self.output_subs = []
        self.subscribe_outputs()
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    def subscribe_outputs(self) -> None:
        """Subscribe to the outputs (done at construction)."""
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.output_subs = [
            self.create_subscription(Image, output,
                                     lambda msg, output=output: self._on_output(output, msg), qos)
            for output in self.outputs]

    def unsubscribe_outputs(self) -> None:
        """Stop listening to the outputs (a lazy node then stops running its network)."""
        for subscription in self.output_subs:
            self.destroy_subscription(subscription)
        self.output_subs = []

    def _on_output(self, output: str, msg: Image) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        with self._cond:
            if stamp_ns in self._abandoned:
                return  # a late answer to a frame that was already given up on
            received = self._received.setdefault(stamp_ns, {})
            received[output] = msg
            if len(received) == len(self.outputs):
                self._answered.add(stamp_ns)
            self._cond.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        if any(status.name.startswith(self.get_namespace().rstrip('/') + '/')
               for status in msg.status):
            self._diagnostics = msg

    def node_counters(self) -> Dict[str, str]:
        """The key-value pairs of the newest /diagnostics status of a node in this namespace
        (``frames_received``, ``frames_dropped``, ...); empty before the first one."""
        msg = self._diagnostics
        if msg is None:
            return {}
        return {kv.key: kv.value for kv in msg.status[0].values}

    def answered_frames(self) -> int:
        """How many frames sent (probes left out) have had all their outputs back."""
        with self._cond:
            return sum(1 for s in self._answered if s >= PROBE_STAMPS_NS)

    def forget_outputs(self) -> None:
        """Drop the outputs received and not yet taken by ``wait_outputs`` (a stream of frames
        nobody waits for one by one would keep them all)."""
        with self._cond:
            self._received.clear()

    def lost_frames(self) -> List[int]:
        """Stamps of the frames sent (probes left out) whose outputs never all came."""
        with self._cond:
            return sorted(s for s in self._sent - self._answered if s >= PROBE_STAMPS_NS)

    def wait_for_node(self, *, timeout: float = 60.0, process: Optional[NodeProcess] = None):
        """Block until a frame makes the whole round trip.

        Seeing the node in the graph is not enough: DDS matches the two ends of a topic one side
        at a time, and a frame sent before the node's subscription has matched our publisher is
        silently lost. So small probe frames (stamps below ``PROBE_STAMPS_NS``, whose outputs
        are discarded) go out, each waited for twice as long as the one before (a large network
        on a busy CPU takes many seconds a frame), until one of them comes back: an answer to
        an earlier probe that came after its wait counts too (a forward pass longer than the
        first wait would otherwise cost a second one).
        """
        deadline = time.monotonic() + timeout
        probe = np.zeros((16, 16, 3), np.uint8)
        wait_s = 0.25
        probes: List[int] = []
        try:
            for stamp_ns in range(1, PROBE_STAMPS_NS):
                if process is not None:
                    process.check_alive()
                if self.image_pub.get_subscription_count() > 0:
                    self.publish_rgb(probe, stamp_ns)
                    probes.append(stamp_ns)
                    wait_s = min(2 * wait_s, max(deadline - time.monotonic(), 0.1))
                    with self._cond:  # every output of any probe so far
                        if self._cond.wait_for(lambda: self._answered.intersection(probes),
                                               timeout=wait_s):
                            return
                else:
                    time.sleep(0.1)
                if time.monotonic() > deadline:
                    break
        finally:
            with self._cond:  # the probes' outputs, now and later, are nobody's
                self._abandon(probes)
        raise NodeStartError(f'no detector node answered on {self.get_namespace()}/image '
                             f'within {timeout:.0f} s (a first start converts the model, which '
                             f'can take minutes on a loaded machine: raise the start-up '
                             f'timeout)' + (process.log_tail() if process is not None else ''))

    def publish(self, msg: Image) -> None:
        with self._cond:
            self._sent.add(stamp_to_ns(msg.header.stamp))
        self.image_pub.publish(msg)

    def publish_rgb(self, image: np.ndarray, stamp_ns: int, *,
                    frame_id: str = 'camera') -> None:
        msg = array_to_image_msg(image, 'rgb8')
        msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_sec_nanosec(stamp_ns)
        msg.header.frame_id = frame_id
        self.publish(msg)

    def wait_outputs(self, stamp_ns: int, *, timeout: float = 30.0) -> Optional[Dict[str, Image]]:
        """Every output of the frame stamped ``stamp_ns``, or None if not all came in time (the
        frame is then abandoned: its late outputs are ignored)."""
        with self._cond:
            if not self._cond.wait_for(
                    lambda: len(self._received.get(stamp_ns, {})) >= len(self.outputs),
                    timeout=timeout):
                self._abandon([stamp_ns])
                return None
            return self._received.pop(stamp_ns)

    def _abandon(self, stamps) -> None:
        """Give up on the frames ``stamps`` (the condition held): what came of them is dropped,
        and their late outputs are ignored (``_on_output``)."""
        for stamp_ns in stamps:
            self._received.pop(stamp_ns, None)
            self._abandoned.add(stamp_ns)

    def set_parameters(self, node_name: str = 'anomseg_detector', *, timeout: float = 10.0,
                       **values) -> Dict[str, str]:
        """Set parameters of the detector node; returns the refusal reason of each parameter
        that was refused (empty when all were accepted)."""
        client = self.create_client(SetParameters, f'{node_name}/set_parameters')
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise NodeStartError(f'{self.get_namespace()}/{node_name} offers no '
                                     f'set_parameters service')
            request = SetParameters.Request(
                parameters=[RclpyParameter(name, value=value).to_parameter_msg()
                            for name, value in values.items()])
            future = client.call_async(request)
            deadline = time.monotonic() + timeout
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            if not future.done():
                raise NodeStartError(f'setting {", ".join(values)} timed out')
            return {name: result.reason for name, result in zip(values, future.result().results)
                    if not result.successful}
        finally:
            self.destroy_client(client)

    def close(self) -> None:
        self._executor.shutdown()
        self.destroy_node()


class LiveDetector:
    """A running detector node and a client talking to it (see ``live_detector``); with
    several cameras, ``clients`` has one per camera (``client`` is the first's)."""

    def __init__(self, client: DetectorClient, process: Optional[NodeProcess],
                 clients: Optional[List[DetectorClient]] = None):
        self.client, self.process = client, process
        self.clients = clients or [client]

    def stop(self) -> int:
        """Stop the node now (SIGINT) and return its exit code; 0 for a node we only joined."""
        return self.process.stop() if self.process is not None else 0


@contextlib.contextmanager
def live_detector(namespace: str, *, params: Optional[Dict[str, object]] = None,
                  outputs: Iterable[str] = OUTPUTS, log_path: Optional[str] = None,
                  connect: bool = False, timeout: float = 60.0,
                  cameras: Iterable[str] = ()) -> Iterator[LiveDetector]:
    """A detector node to talk to, as ``with Writer(...)`` is a bag to write (rosbags): DDS is
    set up for this machine, rclpy initialised, the node started as its own process with
    ``params`` (or, with ``connect``, one already running in ``namespace`` is used), and the
    ``LiveDetector`` comes once a frame has made the round trip. With ``cameras`` (the node's
    parameter) there is a client per camera, on its image topic and its outputs, and each
    has made the round trip. Leaving closes the clients, stops the node and shuts rclpy down,
    in that order, whatever happened."""
    import rclpy
    from anomseg_ros.ros.camera import parse_cameras
    from anomseg_ros.ros.dds import configure_dds
    cameras = list(cameras)
    if cameras:
        params = {**(params or {}), 'cameras': cameras}
    configure_dds(localhost_only=True)
    rclpy.init()
    try:
        with contextlib.ExitStack() as stack:  # left in reverse order
            process = None if connect else stack.enter_context(
                NodeProcess(namespace=namespace, params=params, log_path=log_path))
            clients = []
            for index, (name, topic) in enumerate(parse_cameras(cameras)):
                prefix = f'{name}/' if name else ''
                client = DetectorClient(namespace, outputs=tuple(prefix + o for o in outputs),
                                        image_topic=topic,
                                        name=f'anomseg_client_{name}' if name else
                                        'anomseg_client')
                stack.callback(client.close)
                clients.append(client)
            for client in clients:
                client.wait_for_node(timeout=timeout, process=process)
            yield LiveDetector(clients[0], process, clients)
    finally:
        rclpy.try_shutdown()
