"""rosbag2 tools: round trips are bit-exact, bags are never overwritten, and the live node
replayed from a bag gives the offline numbers with every frame accounted for."""
import json

import numpy as np
import pytest

from anomseg_ros.cli.main import main
from anomseg_ros.errors import DatasetError
from anomseg_ros.pipeline import Detector
from rosbag_tools import read_frames, write_dataset_bag
from rosbag_tools.evaluate import evaluate_offline

from tiny_data import write_benchmark


def _frames(count=3, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        anomaly = rng.choice(np.array([0, 1, 255], np.uint8), (24, 40))
        semantic = rng.integers(0, 19, (24, 40)).astype(np.uint8)
        yield rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), anomaly, semantic


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('compressed', [False, True])
def test_round_trip_is_bit_exact(tmp_path, storage, compressed):
    frames = list(_frames())
    out = str(tmp_path / 'bag')
    assert write_dataset_bag(frames, out, rate_hz=5, storage=storage,
                             compressed=compressed) == 3
    back = list(read_frames(out))
    assert [f.stamp_ns - back[0].stamp_ns for f in back] == [0, 200_000_000, 400_000_000]
    for (image, anomaly, semantic), frame in zip(frames, back):
        np.testing.assert_array_equal(frame.image, image)
        np.testing.assert_array_equal(frame.anomaly, anomaly)
        np.testing.assert_array_equal(frame.semantic, semantic)
    metadata = open(tmp_path / 'bag' / 'metadata.yaml').read()
    assert 'rosbag2_bagfile_information' in metadata and storage in metadata


def test_an_existing_bag_is_never_overwritten(tmp_path):
    out = str(tmp_path / 'bag')
    write_dataset_bag(_frames(1), out)
    with pytest.raises(DatasetError, match='never overwritten'):
        write_dataset_bag(_frames(1), out)


def test_reading_something_that_is_not_a_bag_names_it(tmp_path):
    with pytest.raises(DatasetError, match='nothing_here'):
        list(read_frames(str(tmp_path / 'nothing_here')))


def _benchmark(root, count=3):
    return write_benchmark(root, count, size_hw=(48, 64), box=(10, 30, 20, 40), top_rows=4,
                           seed=5)


def test_from_dataset_cli_writes_images_and_ground_truth(tmp_path):
    root = _benchmark(tmp_path / 'RoadAnomaly21')
    assert main(['bag', 'from-dataset', str(root), str(tmp_path / 'bag'), '--rate', '2']) == 0
    frames = list(read_frames(str(tmp_path / 'bag')))
    assert len(frames) == 3 and frames[0].semantic is None
    assert set(np.unique(frames[0].anomaly)) == {0, 1, 255}
    assert main(['bag', 'from-dataset', str(root), str(tmp_path / 'bag')]) == 2  # exists


def test_bag_eval_says_and_takes_the_resolution_it_compares_at(tmp_path, random_checkpoint,
                                                               capsys):
    """By default the published camera-size maps; with --resolution network, maps and ground
    truth shrunk to the network input, as anomseg eval compares."""
    root = _benchmark(tmp_path / 'RoadAnomaly21')  # 64x48 frames
    bag = str(tmp_path / 'bag')
    assert main(['bag', 'from-dataset', str(root), bag]) == 0
    reports = {}
    for resolution, size in (('label', '64x48'), ('network', '64x48'), ('network', '32x24')):
        path = tmp_path / f'{resolution}_{size}.json'
        assert main(['bag', 'eval', bag, '--offline', '--weights', random_checkpoint,
                     '--device', 'cpu', '--scorer', 'maxlogit', '--input-size', size,
                     '--resolution', resolution, '--json', str(path)]) == 0
        reports[resolution, size] = json.loads(path.read_text())
        assert reports[resolution, size]['resolution'] in capsys.readouterr().out
    camera = reports['label', '64x48']
    assert camera['resolution'] == 'camera resolution, as published'
    assert reports['network', '32x24']['resolution'] == 'network resolution 32x24'
    pixels = {key: r['anomaly']['num_anomaly_pixels'] + r['anomaly']['num_inlier_pixels']
              for key, r in reports.items()}
    assert pixels['label', '64x48'] == pixels['network', '64x48'] == 3 * (48 - 4) * 64
    assert pixels['network', '32x24'] == 3 * (24 - 2) * 32
    # network size = camera size: nothing to shrink, the same numbers as anomseg eval
    assert main(['eval', str(root), '--weights', random_checkpoint, '--device', 'cpu',
                 '--scorers', 'maxlogit', '--input-size', '64x48', '--json',
                 str(tmp_path / 'eval.json')]) == 0
    offline = json.loads((tmp_path / 'eval.json').read_text())
    expected = offline['results']['RoadAnomaly21']['scorers']['maxlogit']
    for key in ('auprc', 'fpr95'):
        assert reports['network', '64x48']['anomaly'][key] == pytest.approx(expected[key],
                                                                            abs=1e-6)


@pytest.mark.ros
@pytest.mark.slow
def test_live_replay_equals_offline_and_accounts_for_every_frame(tmp_path,
                                                                 random_checkpoint):
    root = _benchmark(tmp_path / 'RoadAnomaly21', count=4)
    bag = str(tmp_path / 'bag')
    assert main(['bag', 'from-dataset', str(root), bag]) == 0
    offline = evaluate_offline(bag, Detector.from_checkpoint(random_checkpoint, scorer='maxlogit',
                                                             device='cpu'))
    report = tmp_path / 'live.json'
    record = tmp_path / 'outputs'
    assert main(['bag', 'eval', bag, '--weights', random_checkpoint, '--scorer', 'maxlogit',
                 '--device', 'cpu', '--record', str(record), '--json', str(report)]) == 0
    live = json.loads(report.read_text())
    assert (live['frames_sent'], live['frames_received'], live['frames_missing']) == (4, 4, 0)
    for key in ('auprc', 'fpr95', 'auroc'):
        assert live['anomaly'][key] == pytest.approx(offline['anomaly'][key], abs=1e-4)
    recorded = list(read_frames(str(record), image_topic='/anomseg/anomaly_score'))
    assert len(recorded) == 4 and recorded[0].image.dtype == np.float32


@pytest.mark.ros
@pytest.mark.slow
def test_clocked_replay_reports_the_frames_the_node_skipped(tmp_path, random_checkpoint):
    """At 200 Hz the node (tens of ms a frame) keeps only the newest frames: the others must
    come back as missing, and every frame sent is either received or missing."""
    rng = np.random.default_rng(9)
    frames = [(rng.integers(0, 256, (256, 512, 3), dtype=np.uint8),
               (rng.random((256, 512)) < 0.1).astype(np.uint8), None) for _ in range(12)]
    bag = str(tmp_path / 'bag')
    write_dataset_bag(frames, bag)
    report = tmp_path / 'live.json'
    code = main(['bag', 'eval', bag, '--weights', random_checkpoint, '--device', 'cpu',
                 '--input-size', '512x256', '--rate', '200', '--json', str(report)])
    live = json.loads(report.read_text())
    assert live['frames_sent'] == 12
    assert live['frames_received'] + live['frames_missing'] == 12
    assert live['frames_missing'] > 0 and code == 1  # missing frames are not silent
    assert live['frames_received'] >= 1


def _eval(bag, checkpoint, *extra):
    return main(['bag', 'eval', str(bag), '--offline', '--weights', checkpoint, '--device', 'cpu',
                 '--runtime', 'torch', *extra])


def _write(bag, messages):
    """``(topic, message, stamp_ns)`` into a new bag, as they are."""
    from rosbag_tools.bags import BagWriter
    with BagWriter(str(bag), 'mcap') as writer:
        for topic, msg, stamp_ns in messages:
            writer.write(topic, msg, stamp_ns)


@pytest.mark.parametrize('kind', ['std_msgs/msg/String', 'sensor_msgs/msg/CameraInfo'])
def test_a_non_image_on_the_camera_topic_is_one_line(tmp_path, random_checkpoint, capsys, kind):
    from rosbag_tools.bags import _header, TYPESTORE
    if kind.endswith('String'):
        msg = TYPESTORE.types[kind](data='not a frame')
    else:
        info = TYPESTORE.types[kind]
        msg = info(header=_header(1, 'camera'), height=2, width=2, distortion_model='',
                   d=np.zeros(0), k=np.zeros(9), r=np.zeros(9), p=np.zeros(12), binning_x=0,
                   binning_y=0, roi=TYPESTORE.types['sensor_msgs/msg/RegionOfInterest'](
                       x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    _write(tmp_path / 'bag', [('/camera/image_raw', msg, 1)])
    assert _eval(tmp_path / 'bag', random_checkpoint) == 2
    captured = capsys.readouterr()
    assert f'carries {kind}' in captured.err and 'Traceback' not in captured.err + captured.out
    assert len(captured.err.strip().splitlines()) == 1


def test_a_damaged_bag_is_reported_with_counts_and_fails(tmp_path, random_checkpoint, capsys):
    """A truncated Image, a camera message garbled inside its pixels (rosbags writes MCAP
    chunks without checksums: only the bag's own CRC topic sees it), repeated stamps: each
    skipped and counted, the run fails, and no metric is NaN."""
    import glob
    from rosbag_tools.bags import image_message
    frames = list(_frames(6, seed=2))
    messages = []
    for index, (image, anomaly, _) in enumerate(frames):
        stamp = 1_000 + index
        camera = image_message(image, stamp)
        if index == 1:
            camera.data = camera.data[:1000]  # 1000 of 2880 bytes
        if index == 4:
            stamp = 1_003  # the stamp of frame 3 again
            camera = image_message(image, stamp)
        messages += [('/camera/image_raw', camera, stamp),
                     ('/ground_truth/anomaly', image_message(anomaly, stamp), stamp)]
    _write(tmp_path / 'bag', messages)
    mcap = glob.glob(str(tmp_path / 'bag' / '*.mcap'))[0]
    data = bytearray(open(mcap, 'rb').read())
    at = data.find(frames[5][0].tobytes()[:64])  # inside frame 5's pixels
    data[at + 100:at + 200] = bytes(100)
    open(mcap, 'wb').write(bytes(data))
    report = tmp_path / 'report.json'
    assert _eval(tmp_path / 'bag', random_checkpoint, '--json', str(report)) == 1
    out = capsys.readouterr().out
    assert 'the bag is damaged' in out and 'Traceback' not in out
    result = json.loads(report.read_text())
    assert result['damage']['skipped'] == {'undecodable': 1, 'damaged (checksum mismatch)': 1,
                                           'with a repeated header stamp': 2}
    assert result['frames_sent'] == 2  # frames 0 and 2
    assert all(np.isfinite(result['anomaly'][k]) for k in ('auprc', 'fpr95'))
    # and an existing report is not overwritten without --force
    assert _eval(tmp_path / 'bag', random_checkpoint, '--json', str(report)) == 2
    assert 'already exists' in capsys.readouterr().err
    assert _eval(tmp_path / 'bag', random_checkpoint, '--json', str(report), '--force') == 1


def test_a_bgr8_bag_is_read_as_the_node_reads_it(tmp_path):
    from rosbag_tools.bags import image_message
    image = next(_frames(1))[0]
    msg = image_message(image[..., ::-1].copy(), 5)
    msg.encoding = 'bgr8'
    _write(tmp_path / 'bag', [('/camera/image_raw', msg, 5)])
    frame, = read_frames(str(tmp_path / 'bag'))
    np.testing.assert_array_equal(frame.image, image)


@pytest.mark.ros
def test_bag_eval_against_a_node_that_cannot_start_names_its_log(tmp_path, capsys):
    bag = str(tmp_path / 'bag')
    write_dataset_bag(_frames(1), bag)
    report = tmp_path / 'report.json'
    assert main(['bag', 'eval', bag, '--weights', str(tmp_path / 'missing.pt'), '--json',
                 str(report), '--startup-timeout', '60']) == 2
    err = capsys.readouterr().err
    log = str(tmp_path / 'report.node.log')
    assert 'exited with code 1' in err and log in err and 'missing.pt' in err
    assert 'missing.pt' in open(log).read()
