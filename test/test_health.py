"""The node's health level, its obstacles and its compressed outputs, without DDS."""
import threading

import cv2
import numpy as np
import pytest

from anomseg_ros.obstacles import find_obstacles
from anomseg_ros.ros.health import ERROR, FrameHealth, OK, WARN
from anomseg_ros.ros.outputs import BY_NAME, compress, IMAGE_OUTPUTS, OUTPUTS


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_one_bad_frame_warns_for_the_window_only():
    clock = Clock()
    health = FrameHealth(window_s=10.0, stale_s=5.0, clock=clock)
    assert health.level() == (OK, 'waiting for images')
    for name in ('received', 'processed', 'received', 'rejected'):
        health.count(name)
    level, message = health.level()
    assert level == WARN and '1 rejected' in message
    clock.now += 10.5
    health.count('received')
    health.count('processed')
    assert health.level() == (OK, 'running')
    assert health.snapshot()['rejected'] == 1  # the total stays


def test_all_failed_is_an_error_and_some_failed_a_warning():
    clock = Clock()
    health = FrameHealth(window_s=10.0, stale_s=60.0, clock=clock)
    for _ in range(3):
        health.count('received')
        health.count('failed')
    assert health.level()[0] == ERROR
    health.count('received')
    health.count('processed')
    assert health.level()[0] == WARN


def test_a_frame_waiting_longer_than_the_timeout_is_stale_and_a_dead_worker_is_an_error():
    clock = Clock()
    health = FrameHealth(window_s=10.0, stale_s=5.0, clock=clock)
    health.count('received')
    taken = clock.now
    clock.now += 4.0
    assert health.level(pending_since=taken)[0] == OK  # in the network, not yet too long
    clock.now += 2.0
    level, message = health.level(pending_since=taken)
    assert level == ERROR and message.startswith('stale') and '6.0 s' in message
    clock.now += 30  # nothing waits: not stale, however long ago the last output was
    assert health.level(pending_since=None)[0] == OK
    level, message = health.level(worker_alive=False, worker_error='SystemExit: boom')
    assert level == ERROR and 'boom' in message


def test_a_slow_camera_answered_every_time_is_never_stale():
    """A valid frame every 8 s, each answered 0.1 s after it came (stale_timeout 5 s): no
    tick says stale, also the ticks right after a frame arrived."""
    clock = Clock()
    health = FrameHealth(window_s=10.0, stale_s=5.0, clock=clock)
    levels = []
    for _ in range(6):
        health.count('received')
        arrived = clock.now
        clock.now += 0.05
        levels.append(health.level(pending_since=arrived)[0])  # a tick during the frame
        clock.now += 0.05
        health.count('processed')
        for _ in range(8):
            clock.now += 0.99
            levels.append(health.level(pending_since=None)[0])
    assert set(levels) == {OK}


def test_obstacles_by_hand():
    mask = np.zeros((20, 30), bool)
    mask[2:6, 3:9] = True      # 24 pixels
    mask[10:19, 20:22] = True  # 18 pixels
    mask[0, 29] = True         # a speck
    score = np.zeros((20, 30), np.float32)
    score[2:6, 3:9] = 0.5
    score[3, 4] = 0.9
    score[10:19, 20:22] = 0.7
    obstacles = find_obstacles(mask, score, min_area=2)
    assert [(o.x, o.y, o.width, o.height, o.area) for o in obstacles] == \
        [(3, 2, 6, 4, 24), (20, 10, 2, 9, 18)]
    first = obstacles[0]
    assert first.max_score == pytest.approx(0.9)
    assert first.mean_score == pytest.approx((23 * 0.5 + 0.9) / 24)
    assert (first.centroid_x, first.centroid_y) == pytest.approx((5.5, 3.5))
    assert len(find_obstacles(mask, score, min_area=1)) == 3
    assert find_obstacles(np.zeros((4, 4), bool), np.zeros((4, 4), np.float32)) == []


def test_compressed_outputs_decode_to_the_raw_ones():
    rgb = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    mask = (rgb[..., 0] > 128).astype(np.uint8) * 255
    fmt, data = compress(mask, 'mono8', 'png')
    assert fmt == 'mono8; png compressed mono8'
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(data, np.uint8),
                                               cv2.IMREAD_UNCHANGED), mask)
    fmt, data = compress(rgb, 'rgb8', 'png')
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                           cv2.COLOR_BGR2RGB)
    assert fmt == 'rgb8; png compressed bgr8' and np.array_equal(decoded, rgb)
    assert compress(rgb, 'rgb8', 'jpeg')[0] == 'rgb8; jpeg compressed bgr8'


def test_the_output_table_is_the_one_the_node_and_parameters_use():
    from anomseg_ros.ros import parameters
    assert parameters.OUTPUTS == OUTPUTS == tuple(o.name for o in IMAGE_OUTPUTS)
    names = {p.name for p in parameters.PARAMS}
    assert {f'publish.{name}' for name in OUTPUTS + ('obstacles',)} <= names
    assert BY_NAME['overlay'].compression == 'jpeg'


def test_health_counts_from_two_threads():
    health = FrameHealth()
    threads = [threading.Thread(target=lambda: [health.count('received') for _ in range(500)])
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert health.snapshot()['received'] == 1000
