"""The node's worker without ROS: the newest frame wins per camera, a batch holds every camera
that has a frame, a stale camera does not stall the others, and an error that escapes the
processing ends the thread with its reason until the owner restarts it."""
import threading
import time

from anomseg_ros.ros.camera import parse_cameras
from anomseg_ros.ros.worker import FrameWorker


def _until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


def test_the_newest_frame_wins_and_the_replaced_one_is_reported():
    gate, batches = threading.Event(), []

    def process(batch):
        gate.wait(5)
        batches.append([p.frame for p in batch])
    worker = FrameWorker(process)
    worker.start()
    try:
        assert worker.offer(0, 'a') is False
        assert _until(lambda: worker.pending_since() is not None and not worker._slots[0])
        assert worker.offer(0, 'b') is False  # 'a' is in the network: 'b' waits
        assert worker.offer(0, 'c') is True   # and is replaced by 'c'
        gate.set()
        assert _until(lambda: len(batches) == 2)
        assert batches == [['a'], ['c']]
    finally:
        worker.stop()
    assert not worker.alive and worker.pending_since() is None


def test_a_batch_has_every_camera_and_a_stale_one_does_not_stall_the_others():
    batches = []
    worker = FrameWorker(lambda batch: batches.append(sorted((p.camera, p.frame) for p in batch)),
                         cameras=3, batch_wait_s=0.3)
    worker.start()
    try:
        worker.offer(2, 'c1')
        worker.offer(0, 'a1')
        worker.offer(1, 'b1')
        assert _until(lambda: len(batches) == 1)
        assert batches[0] == [(0, 'a1'), (1, 'b1'), (2, 'c1')]  # all three: taken at once
        started = time.monotonic()
        worker.offer(0, 'a2')
        worker.offer(1, 'b2')  # camera 2 has stopped
        assert _until(lambda: len(batches) == 2)
        waited = time.monotonic() - started
        assert batches[1] == [(0, 'a2'), (1, 'b2')] and 0.25 <= waited < 2.0
    finally:
        worker.stop()


def test_an_escaping_error_ends_the_thread_with_its_reason_until_restarted():
    told, done = [], []

    def process(batch):
        if batch[0].frame == 'poison':
            raise SystemExit('killed by the test')
        done.append(batch[0].frame)
    worker = FrameWorker(process, on_fatal=lambda error, trace: told.append(error))
    worker.start()
    worker.offer(0, 'poison')
    assert _until(lambda: not worker.alive)
    assert worker.error == 'SystemExit: killed by the test' and told == [worker.error]
    assert worker.running  # stopped by an error, not by its owner: restart it
    worker.restart()
    worker.offer(0, 'good')
    assert _until(lambda: done == ['good'])
    assert worker.restarts == 1 and worker.error == ''
    worker.stop()


def test_camera_entries_are_names_or_topics_with_distinct_names():
    import pytest
    from anomseg_ros.errors import ConfigError
    assert parse_cameras([]) == [('', 'image')]
    assert parse_cameras(['front', '/left/image_raw', 'rear/image']) == [
        ('front', 'front/image_raw'), ('left', '/left/image_raw'), ('rear', 'rear/image')]
    for bad, message in ((['/image_raw'], 'names no camera'), (['a', '/a/image_raw'],
                                                               'two cameras are called'),
                         ('front', 'a list of names')):
        with pytest.raises(ConfigError, match=message):
            parse_cameras(bad)
