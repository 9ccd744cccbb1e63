"""The detector node as its own process: every signal, in every state, ends it with exit code 0,
no traceback, within 2 s; and every published mask belongs to the scorer and threshold that
made its score map, while the scorer is switched under a streaming camera."""
import os
import signal
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from anomseg_ros.ros.client import DetectorClient, NodeProcess
from anomseg_ros.data.messages import image_msg_to_array

pytestmark = [pytest.mark.ros, pytest.mark.slow]
EXIT_WITHIN_S = 2.0
RNG = np.random.default_rng(0)


def _wait_for_log(path, text, timeout=120.0, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and text in open(path).read():
            return
        if process is not None and process.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f'{text!r} never appeared in the node log:\n{open(path).read()}')


def _stop(process, *signums, between_s=0.05):
    """Send ``signums`` (a second one ``between_s`` later); the exit code and the seconds from
    the first signal to the exit."""
    started = time.monotonic()
    for index, signum in enumerate(signums):
        if index:
            time.sleep(between_s)
        process.send_signal(signum)
    code = process.wait(30)
    return code, time.monotonic() - started


def _assert_clean(log, code, elapsed):
    text = open(log).read()
    assert code == 0, text[-3000:]
    assert elapsed < EXIT_WITHIN_S, f'{elapsed:.2f} s\n{text[-3000:]}'
    assert 'Traceback' not in text and 'terminate called' not in text, text[-3000:]
    return text


def _stream(client, stop, shape=(64, 128), rate_hz=15.0):
    frame = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
    stamp = 10_000_000_000
    while not stop.is_set():
        stamp += 1
        client.publish_rgb(frame, stamp)
        time.sleep(1.0 / rate_hz)


@pytest.mark.parametrize('state,signums', [
    ('starting', (signal.SIGINT,)),
    ('converting', (signal.SIGTERM,)),
    ('idle', (signal.SIGINT,)),
    ('idle', (signal.SIGTERM,)),
    ('streaming', (signal.SIGINT,)),
    ('streaming', (signal.SIGTERM,)),
    ('mid-frame', (signal.SIGTERM,)),
    ('streaming', (signal.SIGINT, signal.SIGINT)),  # a second Ctrl-C while shutting down
])
def test_every_signal_in_every_state_exits_cleanly(state, signums, rclpy_context,
                                                   random_checkpoint, tmp_path, monkeypatch):
    namespace = f'/exit_{state.replace("-", "_")}_{len(signums)}_{signums[0]}'
    log = str(tmp_path / 'node.log')
    params = {'weights': random_checkpoint, 'device': 'cpu', 'runtime': 'torch'}
    if state == 'converting':  # a first start: the conversion runs when the signal comes
        monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
        params.update(runtime='openvino', input_width=1024, input_height=512)
    if state == 'mid-frame':  # a forward of about a second on two cores
        params.update(precision='fp32', input_width=2048, input_height=1024)
    with NodeProcess(namespace=namespace, params=params, log_path=log) as node:
        process = node.process
        if state == 'starting':
            time.sleep(0.5)  # importing
        elif state == 'converting':
            _wait_for_log(log, 'converting the model to OpenVINO', process=process)
            time.sleep(0.5)
        else:
            client = DetectorClient(namespace)
            try:
                client.wait_for_node(timeout=120, process=node)
                stop = threading.Event()
                if state == 'streaming':
                    streamer = threading.Thread(target=_stream, args=(client, stop))
                    streamer.start()
                    time.sleep(1.5)
                elif state == 'mid-frame':
                    client.publish_rgb(RNG.integers(0, 256, (64, 128, 3), dtype=np.uint8),
                                       20_000_000_000)
                    time.sleep(0.4)
                code, elapsed = _stop(process, *signums)
                stop.set()
            finally:
                client.close()
        if state in ('starting', 'converting'):
            code, elapsed = _stop(process, *signums)
    text = _assert_clean(log, code, elapsed)
    if state in ('starting', 'converting'):
        assert 'interrupted during start-up' in text


def test_every_mask_belongs_to_the_scorer_that_made_its_score(rclpy_context, tmp_path,
                                                              random_checkpoint):
    """The scorer switched between msp and maxlogit at 5 Hz (with its threshold in the same
    call, or alone) while a camera streams at 15 Hz for 60 s at 512x256: every published mask
    is ``score >= threshold`` of the settings reported for that frame, and the score is that
    scorer's (msp in [0, 1])."""
    namespace = '/mask_consistency'
    log = str(tmp_path / 'node.log')
    params = {'weights': random_checkpoint, 'device': 'cpu', 'input_width': 512,
              'input_height': 256}
    pending, problems, checked = {}, [], {'msp': 0, 'maxlogit': 0}
    lock = threading.Lock()

    def on(kind, msg):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with lock:
            parts = pending.setdefault(stamp, {})
            parts[kind] = msg
            if len(parts) < 3:
                return
            del pending[stamp]
        settings = {kv.key: kv.value for kv in parts['settings'].status[0].values}
        score = image_msg_to_array(parts['score'])[0]
        mask = image_msg_to_array(parts['mask'])[0] == 255
        threshold = float(settings['threshold'])
        if not np.array_equal(mask, score >= threshold):
            problems.append(f'{stamp}: {settings}: mask {mask.mean():.3f} of pixels, '
                            f'score >= threshold {(score >= threshold).mean():.3f}')
        if settings['scorer'] == 'msp' and not (0 <= score.min() and score.max() <= 1):
            problems.append(f'{stamp}: msp settings on scores in [{score.min()}, {score.max()}]')
        checked[settings['scorer']] += 1

    with NodeProcess(namespace=namespace, params=params, log_path=log) as node:
        client = DetectorClient(namespace, outputs=('obstacle_mask',))
        try:
            qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
            client.create_subscription(Image, 'anomaly_score', lambda m: on('score', m), qos)
            client.create_subscription(Image, 'obstacle_mask', lambda m: on('mask', m), qos)
            client.create_subscription(DiagnosticArray, 'frame_settings',
                                       lambda m: on('settings', m), qos)
            client.wait_for_node(timeout=120, process=node)
            assert client.set_parameters(scorer='maxlogit') == {}
            stop = threading.Event()
            streamer = threading.Thread(target=_stream, args=(client, stop),
                                        kwargs={'shape': (256, 512)})
            streamer.start()
            try:
                time.sleep(1.0)
                switches = [dict(scorer='msp', threshold=0.55), dict(scorer='maxlogit'),
                            dict(scorer='msp'), dict(scorer='maxlogit', threshold=-0.5)]
                deadline = time.monotonic() + 60
                index = 0
                while time.monotonic() < deadline:
                    assert client.set_parameters(**switches[index % len(switches)]) == {}
                    index += 1
                    client.forget_outputs()  # checked above as they came
                    time.sleep(0.2)
            finally:
                stop.set()
                streamer.join()
            time.sleep(1.0)
        finally:
            client.close()
        assert node.stop() == 0
    assert not problems, f'{len(problems)} frames:\n' + '\n'.join(problems[:10])
    # enough frames of each scorer to have crossed many switches (a slow CPU answers fewer)
    assert checked['msp'] > 50 and checked['maxlogit'] > 50, checked


def test_the_start_up_log_and_info_name_the_training_domain(tmp_path, capsys):
    """The bundled model was trained on synthetic scenes only: said where a user looks."""
    from anomseg_ros.cli.main import main
    from anomseg_ros.paths import default_weights
    weights = default_weights()
    if weights is None:
        pytest.skip('no bundled model in models/')
    assert main(['info', weights]) == 0
    assert 'trained_on: synthetic' in capsys.readouterr().out
    log = str(tmp_path / 'node.log')
    with NodeProcess(namespace='/domain', params={'runtime': 'torch'}, log_path=log) as node:
        _wait_for_log(log, 'scorer msp', process=node.process)
        code, _ = _stop(node.process, signal.SIGINT)
    text = open(log).read()
    assert code == 0 and 'trained on synthetic' in text
    assert 'trained only on the package\'s synthetic road world' in text
    assert 'anomseg adapt' in text
