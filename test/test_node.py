"""The detector node as its own process, over real rclpy / DDS."""
import subprocess
import sys
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from anomseg_ros.ros.client import DetectorClient, NodeProcess
from anomseg_ros.ros.conversions import image_msg_to_array
from anomseg_ros.ros.parameters import OUTPUTS

pytestmark = [pytest.mark.ros, pytest.mark.slow]
NAMESPACE = '/anomseg_test'
H, W = 36, 52


@pytest.fixture(scope='module')
def node(rclpy_context, random_checkpoint, tmp_path_factory):
    log = str(tmp_path_factory.mktemp('node') / 'node.log')
    params = {'weights': random_checkpoint, 'threshold': 0.9, 'subscribe_compressed': True,
              'diagnostics_period': 0.2, 'device': 'cpu'}
    with NodeProcess(namespace=NAMESPACE, params=params, log_path=log) as process:
        client = DetectorClient(NAMESPACE)
        client.diagnostics = []
        client.create_subscription(DiagnosticArray, '/diagnostics',
                                   lambda msg: client.diagnostics.append(msg), 10)
        client.compressed_pub = client.create_publisher(CompressedImage, 'image/compressed', 10)
        client.wait_for_node(timeout=90, process=process)
        yield client
        client.close()
        assert process.stop() == 0, open(log).read()


def _raw(pixels, encoding, stamp_ns, frame_id='cam_front'):
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding)
    msg.step = pixels.shape[1] * (pixels.shape[2] if pixels.ndim == 3 else 1)
    msg.data = np.ascontiguousarray(pixels).tobytes()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def _counters(client, timeout=5.0):
    """The newest /diagnostics counters after ``timeout`` seconds of waiting for fresh ones."""
    client.diagnostics.clear()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(client.diagnostics) < 2:
        time.sleep(0.05)
    assert client.diagnostics, 'no /diagnostics from the node'
    status = client.diagnostics[-1].status[0]
    return {kv.key: kv.value for kv in status.values}, status


RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
ENCODED = {'rgb8': RGB, 'bgr8': RGB[..., ::-1],
           'rgba8': np.dstack([RGB, np.zeros((H, W), np.uint8)]),
           'bgra8': np.dstack([RGB[..., ::-1], np.zeros((H, W), np.uint8)]),
           'mono8': RGB[..., 0]}


@pytest.mark.parametrize('index,encoding', list(enumerate(ENCODED)))
def test_each_encoding_gets_all_five_outputs_with_its_header(node, index, encoding):
    stamp_ns = 5_000_000_000 + index * 1_000_003
    node.publish(_raw(ENCODED[encoding], encoding, stamp_ns))
    outputs = node.wait_outputs(stamp_ns, timeout=30)
    assert outputs is not None, f'no outputs for a {encoding} frame'
    assert set(outputs) == set(OUTPUTS)
    expected = {'semantic': 'mono8', 'semantic_color': 'rgb8', 'anomaly_score': '32FC1',
                'obstacle_mask': 'mono8', 'overlay': 'rgb8'}
    for name, msg in outputs.items():
        assert msg.header.frame_id == 'cam_front'
        assert (msg.height, msg.width) == (H, W)
        assert msg.encoding == expected[name]
    score = image_msg_to_array(outputs['anomaly_score'])[0]
    mask = image_msg_to_array(outputs['obstacle_mask'])[0]
    np.testing.assert_array_equal(mask == 255, score >= 0.9)
    assert set(np.unique(mask)) <= {0, 255}
    if encoding != 'mono8':  # colour orders all decode to the same RGB frame
        overlay = image_msg_to_array(outputs['overlay'])[0]
        np.testing.assert_array_equal(overlay[mask == 0], RGB[mask == 0])


def test_compressed_input(node):
    import cv2
    ok, png = cv2.imencode('.png', cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    msg = CompressedImage(format='png', data=png.tobytes())
    msg.header.stamp.sec, msg.header.frame_id = 77, 'cam_front'
    node.compressed_pub.publish(msg)
    outputs = node.wait_outputs(77_000_000_000, timeout=30)
    assert outputs is not None and outputs['overlay'].width == W


def test_malformed_frames_are_counted_and_the_node_survives(node):
    before, _ = _counters(node)
    bad = [_raw(RGB, 'rgb8', 1), _raw(RGB, '16UC1', 2), _raw(RGB, 'rgb8', 3)]
    bad[0].data = bad[0].data[:100]            # truncated
    bad[2].step = 10                           # step smaller than a row
    empty = Image(encoding='rgb8', height=0, width=0)
    for msg in bad + [empty]:
        node.publish(msg)
        time.sleep(0.3)  # one at a time, so none is merely dropped as stale
    node.compressed_pub.publish(CompressedImage(format='jpeg', data=b'no jpeg here'))
    time.sleep(0.5)
    after, status = _counters(node)
    assert int(after['frames_rejected']) - int(before['frames_rejected']) == 5
    assert status.level == status.WARN
    stamp_ns = 9_000_000_000  # and it still works
    node.publish(_raw(RGB, 'rgb8', stamp_ns))
    assert node.wait_outputs(stamp_ns, timeout=30) is not None


def test_scorer_and_threshold_change_at_run_time_and_bad_values_are_refused(node):
    assert node.set_parameters(scorer='maxlogit', threshold=-1e3 + 1) == {}
    stamp_ns = 11_000_000_000
    node.publish(_raw(RGB, 'rgb8', stamp_ns))
    outputs = node.wait_outputs(stamp_ns, timeout=30)
    score = image_msg_to_array(outputs['anomaly_score'])[0]
    assert (image_msg_to_array(outputs['obstacle_mask'])[0] == 255).all()  # all above -999
    assert score.max() < 0 or score.max() > 1  # -max logit, not a probability
    refused = node.set_parameters(scorer='nonsense')
    assert 'maxlogit' in refused['scorer']  # the reason lists the valid scorers
    assert 'temperature' in node.set_parameters(temperature=-1.0)
    assert 'weights' in node.set_parameters(weights='/elsewhere.pth')  # read-only
    assert node.set_parameters(scorer='msp', threshold=0.9) == {}
    counters, _ = _counters(node)
    assert counters['scorer'] == 'msp' and counters['threshold'] == '0.9'


def test_a_burst_is_never_a_backlog(node):
    before, _ = _counters(node)
    for i in range(30):
        node.publish(_raw(RGB, 'rgb8', 20_000_000_000 + i))
    last = 20_000_000_000 + 29
    assert node.wait_outputs(last, timeout=30) is not None, 'the newest frame was not processed'
    time.sleep(0.5)
    after, _ = _counters(node)
    received = int(after['frames_received']) - int(before['frames_received'])
    processed = int(after['frames_processed']) - int(before['frames_processed'])
    dropped = int(after['frames_dropped']) - int(before['frames_dropped'])
    assert received == processed + dropped  # every frame is accounted for


@pytest.mark.parametrize('params,message', [
    ({'weights': '/no/such/weights.pth'}, 'weights.pth'),
    ({'weights': 'random', 'scorer': 'bogus'}, 'valid scorers'),
    ({'weights': 'random', 'backbone': 'bogus'}, 'valid backbones'),
])
def test_bad_start_up_settings_exit_non_zero_with_a_reason(params, message):
    args = [sys.executable, '-m', 'anomseg_ros.detector', '--ros-args']
    for key, value in params.items():
        args += ['-p', f'{key}:={value}']
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
