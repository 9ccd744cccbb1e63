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


def test_the_drivable_region_fills_each_row_between_its_road_pixels():
    from anomseg_ros.obstacles import drivable_region
    labels = np.full((4, 12), 8, np.uint8)  # vegetation
    labels[1, 2:4] = labels[1, 8:10] = 0     # road on both sides of ...
    labels[1, 4:8] = 13                      # ... a car standing on it
    labels[2, 5] = 0                         # a single road pixel
    region = drivable_region(labels, margin=0)
    expected = np.zeros((4, 12), bool)
    expected[1, 2:10] = True
    expected[2, 5] = True
    np.testing.assert_array_equal(region, expected)
    widened = drivable_region(labels, margin=1)
    assert widened[0, 1] and widened[3, 6] and not widened[3, 0] and not widened[0, 11]


def test_persistence_confirms_an_object_seen_k_of_n_times_and_drops_a_blip():
    from anomseg_ros.obstacles import Obstacle, ObstacleTracker

    def box(x, y=10, size=20):
        return Obstacle(x, y, size, size, size * size, x + size / 2, y + size / 2, 0.9, 1.0)
    tracker = ObstacleTracker(k=3, n=5)
    assert tracker.update([box(100), box(300)]) == []           # frame 1: two candidates
    assert tracker.update([box(102)]) == []                      # frame 2: the blip at 300 gone
    confirmed = tracker.update([box(104), box(500)])             # frame 3: seen 3 of 3
    assert [t.obstacle.x for t in confirmed] == [104] and confirmed[0].age == 3
    first_id = confirmed[0].id
    assert tracker.update([]) == []                              # frame 4: missed, not shown
    again = tracker.update([box(108)])                           # frame 5: 4 of the last 5
    assert [t.id for t in again] == [first_id]
    blip = next(t for t in tracker.tracks if t.obstacle.x == 300)
    assert blip.hits == 1                                        # never confirmed
    for _ in range(5):                                           # gone for n frames: dropped
        tracker.update([])
    assert tracker.tracks == []
    with pytest.raises(ValueError):
        ObstacleTracker(k=6, n=5)


def test_a_drivable_mask_region_keeps_the_mask_on_the_road(random_checkpoint):
    from anomseg_ros.pipeline import Detector
    detector = Detector.from_checkpoint(random_checkpoint, device='cpu', runtime='torch',
                                        threshold=0.0)  # every pixel flagged
    image = np.zeros((64, 128, 3), np.uint8)
    everywhere = detector.predict(image)
    assert everywhere.mask.all()
    detector.configure(mask_region='drivable')
    restricted = detector.predict(image)
    from anomseg_ros.obstacles import drivable_region
    np.testing.assert_array_equal(restricted.mask, drivable_region(restricted.labels))
    assert restricted.settings.describe()['mask_region'] == 'drivable'
