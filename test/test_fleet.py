"""Fleet replay: Ray and in-process give the same per-bag results, bad bags are one line each,
runs resume exactly once, the regression gate fails on a drop, mining finds the pasted object,
and the SegmentMeIfYouCan export is the benchmark's format."""
import json
import os
import shutil

import numpy as np
import pytest

from anomseg_ros.cli.main import main
from rosbag_tools import write_dataset_bag

SIZE = ['--input-size', '128x64', '--runtime', 'torch', '--precision', 'fp32']


def _lines(out):
    with open(os.path.join(out, 'results.jsonl')) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope='module')
def fleet_bags(tmp_path_factory):
    """One labelled bag, one unlabelled, one corrupt (metadata that is no bag's)."""
    root = tmp_path_factory.mktemp('fleet')
    rng = np.random.default_rng(3)

    def frames(count, labelled):
        for _ in range(count):
            image = rng.integers(0, 256, (48, 96, 3), dtype=np.uint8)
            label = np.zeros((48, 96), np.uint8)
            label[20:34, 30:60] = 1
            label[:4] = 255
            yield image, label if labelled else None, None
    write_dataset_bag(frames(3, True), str(root / 'labelled'))
    write_dataset_bag(frames(4, False), str(root / 'unlabelled'))
    (root / 'corrupt').mkdir()
    (root / 'corrupt' / 'metadata.yaml').write_text('rosbag2_bagfile_information: [1, 2\n')
    return root


def _by_bag(out):
    return {os.path.basename(line['bag']): line for line in _lines(out)}


def test_ray_with_two_workers_equals_in_process_and_a_rerun_skips_finished_bags(
        fleet_bags, random_checkpoint, tmp_path, capsys):
    pytest.importorskip('ray')
    bags = [str(fleet_bags / name) for name in ('labelled', 'unlabelled', 'corrupt')]
    local, ray = str(tmp_path / 'local'), str(tmp_path / 'ray')
    common = ['--weights', random_checkpoint, '--scorers', 'msp,maxlogit', *SIZE]
    assert main(['fleet', 'eval', *bags, '--out', local, '--workers', '1', *common]) == 1
    assert main(['fleet', 'eval', *bags, '--out', ray, '--workers', '2', '--engine', 'ray',
                 *common]) == 1
    out = capsys.readouterr().out
    assert 'on ray with 2 workers' in out and 'Traceback' not in out
    first, second = _by_bag(local), _by_bag(ray)
    assert set(first) == {'labelled', 'unlabelled', 'corrupt'}
    for name in ('labelled', 'unlabelled'):
        assert first[name]['status'] == second[name]['status'] == 'ok'
        assert first[name]['scorers'] == second[name]['scorers']  # the same numbers, exactly
        assert first[name]['frames'] == second[name]['frames']
    assert first['labelled']['scorers']['msp']['auprc'] > 0
    assert 'auprc' not in first['unlabelled']['scorers']['msp']  # no ground truth
    assert first['unlabelled']['scorers']['msp']['flagged_share'] is not None
    assert first['corrupt']['status'] == 'error' and 'cannot be read' in \
        first['corrupt']['error']
    pooled = [json.load(open(os.path.join(d, 'pooled.json'))) for d in (local, ray)]
    assert pooled[0] == pooled[1] and pooled[0]['msp']['labelled_bags'] == 1
    assert os.path.isfile(os.path.join(local, 'summary.md'))
    assert os.path.isfile(os.path.join(local, 'summary.png'))
    # a re-run scores only what is not finished: the corrupt bag, again
    assert main(['fleet', 'eval', *bags, '--out', local, '--workers', '1', *common]) == 1
    assert '2 already scored with these weights and settings, 1 to score' in \
        capsys.readouterr().out
    assert [os.path.basename(line['bag']) for line in _lines(local)].count('labelled') == 1


def test_bad_input_is_one_line_each_and_the_fleet_goes_on(fleet_bags, random_checkpoint,
                                                          tmp_path, capsys):
    from rosbag_tools.bags import BagWriter, TYPESTORE
    wrong = str(tmp_path / 'wrong_type')
    with BagWriter(wrong, 'mcap') as bag:
        msg = TYPESTORE.types['std_msgs/msg/UInt32'](data=7)
        bag._write_raw('/camera/image_raw', msg.__msgtype__,
                       TYPESTORE.serialize_cdr(msg, msg.__msgtype__), 1)
    listing = tmp_path / 'bags.txt'
    listing.write_text(f'# two drives\n{fleet_bags / "labelled"}\n{tmp_path / "gone"}\n')
    empty = tmp_path / 'no_bags_here'
    empty.mkdir()
    out = str(tmp_path / 'out')
    code = main(['fleet', 'eval', str(listing), wrong, str(empty), '--out', out,
                 '--workers', '1', '--weights', random_checkpoint, *SIZE])
    assert code == 1
    printed = capsys.readouterr().out
    assert 'Traceback' not in printed
    lines = _by_bag(out)
    assert lines['labelled']['status'] == 'ok'
    assert 'std_msgs/msg/UInt32' in lines['wrong_type']['error']
    assert 'does not exist' in lines['gone']['error']
    assert 'no rosbag2 in it' in lines['no_bags_here']['error']
    # results of other weights in the folder: said, kept, not used
    other = str(tmp_path / 'other.pt')
    shutil.copy(random_checkpoint, other)
    with open(other, 'ab') as handle:
        handle.write(b'\0')  # other bytes: other weights by their hash
    main(['fleet', 'eval', str(fleet_bags / 'labelled'), '--out', out, '--workers', '1',
          '--weights', other, *SIZE])
    assert 'are of other weights or settings: they are kept and not used' in \
        capsys.readouterr().out


def test_an_interrupted_run_keeps_finished_bags_and_resumes(fleet_bags, random_checkpoint,
                                                            tmp_path, monkeypatch, capsys):
    from anomseg_ros.fleet import scoring
    bags = [str(fleet_bags / 'labelled'), str(fleet_bags / 'unlabelled')]
    out = str(tmp_path / 'out')
    original = scoring.BagScorer.score

    def interrupted(self, path):
        if path.endswith('unlabelled'):
            raise KeyboardInterrupt
        return original(self, path)
    monkeypatch.setattr(scoring.BagScorer, 'score', interrupted)
    args = ['fleet', 'eval', *bags, '--out', out, '--workers', '1', '--weights',
            random_checkpoint, *SIZE]
    assert main(args) == 130
    assert [os.path.basename(line['bag']) for line in _lines(out)] == ['labelled']
    monkeypatch.setattr(scoring.BagScorer, 'score', original)
    assert main(args) == 0
    assert '1 already scored with these weights and settings, 1 to score' in \
        capsys.readouterr().out
    assert [os.path.basename(line['bag']) for line in _lines(out)] == ['labelled', 'unlabelled']


def test_compare_exits_non_zero_on_a_drop_and_on_a_newly_failing_bag(
        fleet_bags, random_checkpoint, tmp_path, capsys):
    old = str(tmp_path / 'old')
    assert main(['fleet', 'eval', str(fleet_bags / 'labelled'), str(fleet_bags / 'unlabelled'),
                 '--out', old, '--workers', '1', '--weights', random_checkpoint, *SIZE]) == 0
    assert main(['fleet', 'compare', old, old]) == 0
    assert 'no regression' in capsys.readouterr().out
    new = str(tmp_path / 'new')
    shutil.copytree(old, new)
    pooled_path = os.path.join(new, 'pooled.json')
    pooled = json.load(open(pooled_path))
    pooled['msp']['auprc'] -= 0.015  # 1.5 points
    json.dump(pooled, open(pooled_path, 'w'))
    assert main(['fleet', 'compare', old, new, '--max-drop', '1.0']) == 1
    assert 'pooled msp AuPRC' in capsys.readouterr().out
    assert main(['fleet', 'compare', old, new, '--max-drop', '2.0']) == 0
    # a bag that was scored and now fails
    lines = _lines(new)
    lines[-1] = dict(lines[-1], status='error', error='crafted')
    with open(os.path.join(new, 'results.jsonl'), 'w') as handle:
        handle.writelines(json.dumps(line) + '\n' for line in lines)
    assert main(['fleet', 'compare', old, new, '--max-drop', '2.0']) == 1
    assert 'newly fails (crafted)' in capsys.readouterr().out


def _street_bag(path, seed, pasted_at):
    from anomseg_ros.data.synthetic import anomalies
    from anomseg_ros.data.synthetic.scene import render_scene
    rng = np.random.default_rng(seed)

    def frames():
        for index in range(4):
            image = render_scene(rng, 512, 256)[0].copy()
            if index == pasted_at:
                rgb, mask, _, _ = anomalies.sample_object('test', 90, rng)
                anomalies.paste(image, np.zeros((256, 512), np.uint8), rgb, mask,
                                (256, 236), 1)
            yield image, None, None
    write_dataset_bag(frames(), str(path))


def test_mining_returns_the_frame_with_the_pasted_object_first(tmp_path, capsys):
    """The bundled model on unlabelled street drives: one frame of one bag has an unknown
    object pasted on the road; it is the fleet's first frame worth labelling."""
    _street_bag(tmp_path / 'drive_a', 11, pasted_at=None)
    _street_bag(tmp_path / 'drive_b', 12, pasted_at=2)
    out = str(tmp_path / 'mined')
    assert main(['fleet', 'mine', str(tmp_path), '--out', out, '--workers', '1', '--top', '3',
                 '--runtime', 'torch']) == 0
    with open(os.path.join(out, 'mined.jsonl')) as handle:
        mined = [json.loads(line) for line in handle]
    assert len(mined) == 3
    first = mined[0]
    assert os.path.basename(first['bag']) == 'drive_b'
    assert first['stamp_ns'] == 1_700_000_000_200_000_000  # frame 2 at 10 Hz
    assert first['largest_obstacle_px'] > mined[1]['largest_obstacle_px']
    assert open(os.path.join(out, first['thumbnail']), 'rb').read(2) == b'\xff\xd8'  # a JPEG
    assert first['thumbnail'] in open(os.path.join(out, 'mined.md')).read()


def test_smiyc_export_is_the_benchmarks_format_and_reads_back(tmp_path, random_checkpoint,
                                                              capsys):
    """images/ + labels_masks/NAME_labels_semantic.png (a released track) with one unlabelled
    test frame: every image gets DIR/anomaly_p/METHOD/DATASET/STEM.hdf5, float16 'value' at
    the image's size, gzip 9; read back with --scores it gives the numbers of the model."""
    h5py = pytest.importorskip('h5py')
    from anomseg_ros.data.images import write_gray, write_rgb
    root = tmp_path / 'RoadAnomaly21'
    rng = np.random.default_rng(1)
    for index in range(3):
        name = f'validation{index:04d}'
        write_rgb(str(root / 'images' / f'{name}.jpg'),
                  rng.integers(0, 256, (60, 100, 3), dtype=np.uint8))
        label = np.zeros((60, 100), np.uint8)
        label[20:40, 30:70] = 1
        write_gray(str(root / 'labels_masks' / f'{name}_labels_semantic.png'), label)
    write_rgb(str(root / 'images' / 'test0000.jpg'),
              rng.integers(0, 256, (60, 100, 3), dtype=np.uint8))  # no label: a test frame
    out = tmp_path / 'smiyc'
    report = tmp_path / 'report.json'
    assert main(['eval', str(root), '--weights', random_checkpoint, '--scorers', 'msp,energy',
                 '--resolution', 'label', '--export-smiyc', str(out), '--json', str(report),
                 '--runtime', 'torch', '--precision', 'fp32']) == 0
    for method in ('anomseg_msp', 'anomseg_energy'):
        folder = out / 'anomaly_p' / method / 'AnomalyTrack-all'
        assert sorted(os.listdir(folder)) == ['test0000.hdf5', 'validation0000.hdf5',
                                              'validation0001.hdf5', 'validation0002.hdf5']
        with h5py.File(folder / 'test0000.hdf5', 'r') as handle:
            assert list(handle) == ['value']
            value = handle['value']
            assert value.dtype == np.float16 and value.shape == (60, 100)
            assert value.compression == 'gzip' and value.compression_opts == 9
    # the maps are the model's own at the image's size, rounded to float16
    from anomseg_ros.data.images import read_rgb
    from anomseg_ros.evaluation.anomaly import score_image
    from anomseg_ros.pipeline import Detector, make_scorer
    detector = Detector.from_checkpoint(random_checkpoint, runtime='torch', precision='fp32')
    image = read_rgb(str(root / 'images' / 'validation0001.jpg'))
    expected = score_image(detector, {'energy': make_scorer('energy', detector.info)}, image,
                           'label')['energy']
    with h5py.File(out / 'anomaly_p' / 'anomseg_energy' / 'AnomalyTrack-all' /
                   'validation0001.hdf5', 'r') as handle:
        np.testing.assert_array_equal(handle['value'][:], expected.astype(np.float16))
    capsys.readouterr()
    assert main(['eval', str(root), '--scores',
                 str(out / 'anomaly_p' / 'anomseg_energy' / 'AnomalyTrack-all'),
                 '--json', str(tmp_path / 'back.json')]) == 0
    model = json.load(open(report))['results']['RoadAnomaly21']['scorers']['energy']
    back = json.load(open(tmp_path / 'back.json'))['results']['RoadAnomaly21']['scorers']
    assert back['scores']['auprc'] == pytest.approx(model['auprc'], abs=5e-3)  # float16
    assert json.load(open(report))['results']['RoadAnomaly21']['smiyc']['images'] == 4


def test_expand_bags_takes_globs_folders_and_lists(tmp_path, fleet_bags):
    from anomseg_ros.fleet.bags import expand_bags
    listing = tmp_path / 'list.txt'
    listing.write_text('labelled\n# a comment\nunlabelled  # trailing comment\n')
    shutil.copy(listing, fleet_bags / 'list.txt')
    bags, problems = expand_bags([str(fleet_bags / 'list.txt'), str(fleet_bags / '*abel*'),
                                  str(fleet_bags)])
    assert [os.path.basename(b) for b in bags] == ['labelled', 'unlabelled', 'corrupt']
    assert problems == []
    os.remove(fleet_bags / 'list.txt')
    _, problems = expand_bags([str(tmp_path / 'nothing*')])
    assert len(problems) == 1 and 'matches no bag' in problems[0][1]


def test_a_worker_killed_mid_bag_is_restarted_and_its_bag_scored(tmp_path, random_checkpoint):
    """SIGKILL one Ray worker while it scores a bag: Ray restarts it, the bag is tried again,
    and every bag ends with its result line."""
    import signal
    import subprocess
    import sys
    import time
    pytest.importorskip('ray')
    rng = np.random.default_rng(0)
    for index in range(4):
        write_dataset_bag(((rng.integers(0, 256, (256, 512, 3), dtype=np.uint8), None, None)
                           for _ in range(40)), str(tmp_path / 'bags' / f'drive_{index}'))
    out = str(tmp_path / 'out')
    run = subprocess.Popen([sys.executable, '-m', 'anomseg_ros.cli.main', 'fleet', 'eval',
                            str(tmp_path / 'bags'), '--out', out, '--workers', '2',
                            '--weights', random_checkpoint, '--runtime', 'torch',
                            '--input-size', '512x256'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, deadline = None, time.monotonic() + 180
    while killed is None and time.monotonic() < deadline and run.poll() is None:
        found = subprocess.run(['pgrep', '-f', 'ray::_Worker.score'], capture_output=True,
                               text=True).stdout.split()
        if found:
            killed = int(found[0])
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    output, _ = run.communicate(timeout=300)
    assert killed, f'no worker was seen scoring: {output[-2000:]}'
    assert run.returncode == 0, output[-3000:]
    lines = _lines(out)
    assert sorted(os.path.basename(line['bag']) for line in lines) == \
        [f'drive_{index}' for index in range(4)]
    assert all(line['status'] == 'ok' and line['frames'] == 40 for line in lines)
