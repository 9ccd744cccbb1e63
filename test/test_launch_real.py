"""The launch file run for real: the package built with colcon, ``ros2 launch`` of
``detector.launch.py``, a frame in and every output back (obstacles as Detection2DArray), the
params file obeyed and overridden, ``dds_profile:=`` in the node's environment, and exit code 0
on SIGINT. Needs ``launch`` / ``ros2launch`` / ``vision_msgs`` (ROS packages, not PyPI wheels:
``make test`` builds them from the ROS sources beside the checkout when they are there) and
skips, saying so, without them."""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from anomseg_ros.ros.client import DetectorClient

pytestmark = [pytest.mark.ros, pytest.mark.slow]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
NEEDED = ('launch', 'launch_ros', 'ros2launch', 'vision_msgs')


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """The package built and installed by colcon, as on a ROS workspace."""
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing or not os.path.exists(os.path.join(BIN, 'ros2')):
        pytest.skip(f'{", ".join(missing) or "the ros2 command"} not installed: these are ROS '
                    f'packages, not PyPI wheels (make test builds them from the ROS sources '
                    f'beside the checkout when they are there)')
    root = tmp_path_factory.mktemp('colcon')
    build = subprocess.run(
        [os.path.join(BIN, 'colcon'), 'build', '--base-paths', REPO, '--packages-select',
         'anomseg_ros', '--build-base', str(root / 'build'), '--install-base',
         str(root / 'install')], cwd=root, capture_output=True, text=True, timeout=600,
        env={**os.environ, 'PATH': f'{BIN}:{os.environ.get("PATH", "")}'})
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return root / 'install'


def _launch(command: str, log_path):
    """``ros2 launch`` (a shell ``command``) as its own process, its output in ``log_path``."""
    with open(log_path, 'w') as log:
        return subprocess.Popen(['sh', '-c', command], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, 'PYTHONUNBUFFERED': '1'})


def _interrupt(launch) -> int:
    """Ctrl-C to the launch, as a user gives it; its exit code (killed after 30 s)."""
    launch.send_signal(signal.SIGINT)
    try:
        return launch.wait(30)
    except subprocess.TimeoutExpired:
        launch.kill()
        return launch.wait()


def _ended_cleanly(code: int, log_path) -> str:
    """The launch's log, once checked: exit code 0, no escalation to SIGTERM, no traceback."""
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    assert 'SIGTERM' not in text and 'Traceback' not in text, text[-3000:]
    return text


def test_ros2_launch_runs_the_node_and_ends_cleanly_on_sigint(installed, rclpy_context,
                                                              random_checkpoint, tmp_path):
    from vision_msgs.msg import Detection2DArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n'
                      f'    weights: {random_checkpoint}\n    runtime: torch\n'
                      '    device: cpu\n    scorer: maxlogit\n    threshold: -0.5\n')
    profile = tmp_path / 'my_profile.xml'
    shutil.copy(os.path.join(REPO, 'config', 'fastdds_large_images.xml'), profile)
    log_path = tmp_path / 'launch.log'
    command = (f'. {installed}/setup.sh && exec {BIN}/ros2 launch anomseg_ros '
               f'detector.launch.py namespace:=lt image:=/lt_cam/image_raw '
               f'params_file:={params} threshold:=-0.25 dds_profile:={profile}')
    launch = _launch(command, log_path)
    client = DetectorClient('/lt', image_topic='/lt_cam/image_raw')
    try:
        detections = []
        client.create_subscription(Detection2DArray, '/lt/obstacles', detections.append,
                                   QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        client.wait_for_node(timeout=180)
        stamp_ns = 5_000_000_000
        client.publish_rgb(np.zeros((64, 128, 3), np.uint8), stamp_ns)
        assert client.wait_outputs(stamp_ns, timeout=60) is not None  # every image output
        deadline = time.monotonic() + 20
        while not any(d.header.stamp.sec == 5 for d in detections) and \
                time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(d.header.stamp.sec == 5 for d in detections), 'no Detection2DArray'
        deadline = time.monotonic() + 10
        while not client.node_counters() and time.monotonic() < deadline:
            time.sleep(0.1)
        counters = client.node_counters()
        # the file's scorer holds; the launch argument overrides its threshold
        assert counters['scorer'] == 'maxlogit' and float(counters['threshold']) == -0.25
        node_pids = [int(p) for p in subprocess.run(
            ['pgrep', '-f', 'lib/anomseg_ros/detector'], capture_output=True,
            text=True).stdout.split()]
        environments = [open(f'/proc/{pid}/environ', 'rb').read().split(b'\0')
                        for pid in node_pids if os.path.exists(f'/proc/{pid}/environ')]
        assert any(f'FASTDDS_DEFAULT_PROFILES_FILE={profile}'.encode() in env
                   for env in environments), 'dds_profile did not reach the node'
    finally:
        client.close()
        code = _interrupt(launch)
    text = _ended_cleanly(code, log_path)
    assert 'process has finished cleanly' in text, text[-3000:]


def _change_state(client, service, transition, timeout=60.0):
    """Request ``transition`` (a lifecycle_msgs Transition id) over the node's own service, as
    ``ros2 lifecycle set`` does; True when it succeeded."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    caller = client.create_client(ChangeState, service)
    try:
        assert caller.wait_for_service(timeout_sec=timeout), f'no {service}'
        future = caller.call_async(ChangeState.Request(transition=Transition(id=transition)))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        return future.done() and future.result().success
    finally:
        client.destroy_client(caller)


def test_ros2_launch_of_the_managed_node_goes_through_its_lifecycle(installed, rclpy_context,
                                                                    random_checkpoint,
                                                                    tmp_path):
    """managed:=true under a real ros2 launch: unconfigured and silent at start; configure
    loads, activate answers frames, deactivate stops taking them, cleanup releases; SIGINT
    ends the launch with exit code 0."""
    from lifecycle_msgs.msg import Transition
    log_path = tmp_path / 'launch.log'
    command = (f'. {installed}/setup.sh && exec {BIN}/ros2 launch anomseg_ros '
               f'detector.launch.py managed:=true namespace:=lm image:=/lm_cam/image_raw '
               f'weights:={random_checkpoint} runtime:=torch')
    launch = _launch(command, log_path)
    client = DetectorClient('/lm', image_topic='/lm_cam/image_raw')
    service = '/lm/anomseg_detector/change_state'
    try:
        assert _change_state(client, service, Transition.TRANSITION_CONFIGURE, timeout=180)
        stamp_ns = 6_000_000_000
        client.publish_rgb(np.zeros((64, 128, 3), np.uint8), stamp_ns)
        assert client.wait_outputs(stamp_ns, timeout=3) is None  # configured, not active
        assert _change_state(client, service, Transition.TRANSITION_ACTIVATE)
        client.wait_for_node(timeout=120)  # frames answered once active
        assert _change_state(client, service, Transition.TRANSITION_DEACTIVATE)
        stamp_ns = 7_000_000_000
        client.publish_rgb(np.zeros((64, 128, 3), np.uint8), stamp_ns)
        assert client.wait_outputs(stamp_ns, timeout=3) is None  # inactive: no frame taken
        assert _change_state(client, service, Transition.TRANSITION_CLEANUP)
    finally:
        client.close()
        code = _interrupt(launch)
    _ended_cleanly(code, log_path)
