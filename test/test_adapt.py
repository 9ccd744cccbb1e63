"""``anomseg adapt``: a learned score from unlabeled frames (a folder, or a bag topic), an
ordinary checkpoint with the adaptation recorded, and the refusals before any training."""
import os

import numpy as np
import pytest

from anomseg_ros.checkpoint import read_checkpoint
from anomseg_ros.cli.main import main
from anomseg_ros.data.images import read_label, write_rgb
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.pipeline import Detection, Detector
from anomseg_ros.training.adapt import pseudo_labels

TINY = ['--epochs', '1', '--generator-epochs', '1', '--iters-per-epoch', '2', '--batch-size',
        '2', '--workers', '0', '--device', 'cpu', '--input-size', '64x32',
        '--ensemble-step', '0.5', '--label-runtime', 'torch']


def _frames(folder, count=6, seed=3, size_hw=(40, 72)):
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        write_rgb(os.path.join(folder, f'frame_{i}.png'),
                  rng.integers(0, 256, (*size_hw, 3), dtype=np.uint8))
    return str(folder)


def test_pseudo_labels_keep_only_confident_pixels():
    labels = np.array([[1, 2], [3, VOID_LABEL]], np.uint8)
    score = np.array([[0.05, 0.5], [0.1, 0.0]], np.float32)  # msp: 1 - max softmax
    kept = pseudo_labels(Detection(labels=labels, score_map=score, mask=score > 1), 0.9)
    np.testing.assert_array_equal(kept, [[1, VOID_LABEL], [3, VOID_LABEL]])


def test_adapt_from_a_folder_writes_a_checkpoint_the_pipeline_loads(tmp_path, outlier_dir,
                                                                    random_checkpoint, capsys):
    frames = _frames(tmp_path / 'frames')
    out = str(tmp_path / 'adapted')
    argv = ['adapt', '--checkpoint', random_checkpoint, '--frames', frames, '--out', out,
            '--outliers', outlier_dir, '--confidence', '0.0', *TINY]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert '5 training frames' in printed and '1 held out' in printed
    data = os.path.join(out, 'data')
    labels = sorted(os.listdir(os.path.join(data, 'gtFine', 'train', 'adapt')))
    assert len(labels) == 5 and labels[0].endswith('_gtFine_labelTrainIds.png')
    mask = read_label(os.path.join(data, 'track', 'labels_masks',
                                   os.listdir(os.path.join(data, 'track', 'labels_masks'))[0]))
    assert set(np.unique(mask)) == {0, 1}  # the pasted outlier is the held-out frame's anomaly
    checkpoint = read_checkpoint(os.path.join(out, 'last.pt'))
    adaptation = checkpoint['adaptation']
    assert adaptation['method'] == 'synboost' and adaptation['frames'] == 6
    assert adaptation['outlier_texture'] == 'own'  # a user's cut-outs keep their pixels
    assert adaptation['source'] == frames and len(adaptation['base_sha256']) == 64
    detector = Detector.from_checkpoint(os.path.join(out, 'last.pt'), scorer='synboost',
                                        device='cpu')
    result = detector.predict(np.zeros((40, 72, 3), np.uint8))
    assert result.score_map.shape == (40, 72) and np.isfinite(result.score_map).all()
    assert main(['eval', os.path.join(data, 'track'), '--weights', os.path.join(out, 'last.pt'),
                 '--scorers', 'synboost', '--device', 'cpu', '--runtime', 'torch']) == 0
    # a second run into the same folder is refused; --resume keeps the prepared data
    assert main(argv) == 2
    assert '--resume' in capsys.readouterr().err
    assert main(argv + ['--resume']) == 0


def test_adapt_reads_a_bag_topic(tmp_path, random_checkpoint, outlier_dir):
    from rosbag_tools import write_dataset_bag
    rng = np.random.default_rng(4)
    bag = str(tmp_path / 'drive')
    write_dataset_bag(((rng.integers(0, 256, (40, 72, 3), dtype=np.uint8), None, None)
                       for _ in range(8)), bag)
    out = str(tmp_path / 'adapted')
    assert main(['adapt', '--checkpoint', random_checkpoint, '--frames', bag, '--topic',
                 '/camera/image_raw', '--every', '2', '--out', out, '--outliers', outlier_dir,
                 '--confidence', '0.0', *TINY]) == 0
    assert read_checkpoint(os.path.join(out, 'last.pt'))['adaptation']['frames'] == 4


def test_retexture_keeps_the_shapes_and_takes_no_texture_from_the_ground():
    import torch
    from anomseg_ros.methods.outliers import retexture
    cutout = torch.zeros(4, 12, 20)
    cutout[:3] = 0.5
    cutout[3, 2:10, 3:17] = 1.0
    frame = np.zeros((60, 100, 3), np.uint8)
    frame[:, :50] = (200, 0, 0)   # the ground: red
    frame[:, 50:] = (0, 0, 200)   # the rest: blue
    ground = np.zeros((60, 100), bool)
    ground[:, :50] = True
    out = retexture([cutout] * 8, [frame], avoid=[ground],
                    generator=torch.Generator().manual_seed(0), scale=(0.1, 0.2))
    for textured in out:
        assert textured.shape == cutout.shape
        assert torch.equal(textured[3], cutout[3])  # the mask is the cut-out's own
        # a crop may overlap the ground by at most AVOID_SHARE: mostly blue
        assert textured[2].mean() > 0.5 and textured[0].mean() < 0.2 * 200 / 255 + 0.01
    plain = retexture([cutout], [frame], generator=torch.Generator().manual_seed(0))
    assert plain[0].shape == cutout.shape


def test_generated_cutouts_take_the_frames_texture_and_a_users_own_keep_theirs():
    import argparse
    from anomseg_ros.cli.adapt import outlier_texture
    auto = argparse.Namespace(outlier_texture='auto', outliers=None)
    assert outlier_texture(auto) == 'frames'
    assert outlier_texture(argparse.Namespace(outlier_texture='auto', outliers='cut')) == 'own'
    assert outlier_texture(argparse.Namespace(outlier_texture='own', outliers=None)) == 'own'


def test_adapt_with_frame_textures_pastes_the_frames_own_pixels(tmp_path, outlier_dir,
                                                                random_checkpoint, monkeypatch):
    from anomseg_ros.methods.outliers import load_outliers
    from anomseg_ros.training import adapt
    monkeypatch.setattr(adapt, 'TEXTURE_FRAMES', 2)  # of the 5 training frames: 1st and 4th
    sources = []
    retexture = adapt.retexture
    monkeypatch.setattr(adapt, 'retexture', lambda cutouts, frames, **kw: sources.append(
        len(frames)) or retexture(cutouts, frames, **kw))
    frames = _frames(tmp_path / 'frames')
    out = str(tmp_path / 'adapted')
    assert main(['adapt', '--checkpoint', random_checkpoint, '--frames', frames, '--out', out,
                 '--outliers', outlier_dir, '--confidence', '0.0', '--outlier-texture',
                 'frames', *TINY]) == 0
    adaptation = read_checkpoint(os.path.join(out, 'last.pt'))['adaptation']
    assert adaptation['outlier_texture'] == 'frames' and sources == [2]
    assert adaptation['outliers'] == os.path.abspath(os.path.join(out, 'data', 'outliers'))
    original, textured = load_outliers(outlier_dir), load_outliers(adaptation['outliers'])
    assert len(textured) == len(original) == adaptation['outlier_cutouts']
    for a, b in zip(original, textured):
        assert a.shape == b.shape and np.array_equal(a[3].numpy(), b[3].numpy())
    assert not all(np.allclose(a[:3].numpy(), b[:3].numpy()) for a, b in zip(original, textured))


@pytest.mark.parametrize('problem,message', [
    ('no_frames', 'at least 2 readable frames'),
    ('no_cutouts', 'no outlier images'),
    ('learned_base', 'already a synboost model'),
    ('wrong_topic', 'has no camera topic'),
    ('paste_scale', '0 < MIN <= MAX <= 1'),
])
def test_adapt_refuses_bad_input_before_training(tmp_path, random_checkpoint, outlier_dir,
                                                 capsys, problem, message):
    frames = _frames(tmp_path / 'frames', count=1 if problem == 'no_frames' else 4)
    outliers, checkpoint, extra = outlier_dir, random_checkpoint, []
    if problem == 'no_cutouts':
        outliers = str(tmp_path / 'empty')
        os.makedirs(outliers)
    if problem == 'learned_base':
        checkpoint = os.path.join(os.path.dirname(__file__), '..', 'models',
                                  'synboost_synthetic.pt')
        if not os.path.exists(checkpoint):
            pytest.skip('no bundled SynBoost model')
    if problem == 'wrong_topic':
        from rosbag_tools import write_dataset_bag
        frames = str(tmp_path / 'bag')
        write_dataset_bag([(np.zeros((8, 8, 3), np.uint8), None, None)] * 2, frames)
        extra = ['--topic', '/front/image_raw']
    if problem == 'paste_scale':
        extra = ['--paste-scale', '0.5,0.2']
    argv = ['adapt', '--checkpoint', checkpoint, '--frames', frames, '--out',
            str(tmp_path / 'out'), '--outliers', outliers, *extra, *TINY]
    try:
        code = main(argv)
    except SystemExit as exit_:  # refused by the parser: a flag's value is malformed
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'out' / 'last.pt')


def test_a_label_free_threshold_flags_the_asked_share_of_ordinary_frames():
    """Crafted logits: MaxLogit's scores of a frame are -0, -1, ..., -9999 (one per pixel), so
    a threshold that flags 1% of them lies in (-100, -99]."""
    import torch
    from anomseg_ros.checkpoint import ModelInfo
    from anomseg_ros.evaluation.calibration import false_alarm_thresholds, parse_share

    class Crafted:
        info = ModelInfo(num_classes=19, void_channel=None)

        def logits(self, images):
            values = torch.arange(10_000, dtype=torch.float32).reshape(1, 1, 100, 100)
            return torch.cat([values, torch.full((1, 18, 100, 100), -1e4)], dim=1)

    assert parse_share('1%') == pytest.approx(0.01) and parse_share(0.01) == 0.01
    points = false_alarm_thresholds(Crafted(), [None, None], ['maxlogit'], share=0.01)
    point = points['maxlogit']
    assert -100.0 < point['threshold'] <= -99.0
    assert point['flagged'] == pytest.approx(0.01, abs=1e-3) and point['frames'] == 2


def test_calibrate_unlabeled_writes_thresholds_that_auto_uses(tmp_path, random_checkpoint,
                                                              capsys):
    frames = _frames(tmp_path / 'frames', count=3, size_hw=(64, 128))  # the network's size
    out = str(tmp_path / 'calibrated.pt')
    assert main(['calibrate', '--weights', random_checkpoint, '--thresholds', '--unlabeled',
                 frames, '--false-alarm', '2%', '--scorers', 'msp,maxlogit', '--out', out,
                 '--device', 'cpu', '--runtime', 'torch']) == 0
    assert 'flagging 2% of the pixels of 3 unlabeled frames' in capsys.readouterr().out
    detector = Detector.from_checkpoint(out, scorer='maxlogit', device='cpu', runtime='torch')
    assert detector.threshold_source == 'calibrated'
    flagged = np.mean([detector.predict(image).mask.mean() for image in
                       (np.asarray(__import__('PIL.Image').Image.open(
                           os.path.join(frames, f'frame_{i}.png'))) for i in range(3))])
    assert 0.01 < flagged <= 0.02  # at most the share asked for (bf16 scores tie)
    record = read_checkpoint(out)['threshold_calibration']
    assert record['rule'] == 'false-alarm 2%' and record['frames'] == 3
    # without a DATASET and without --unlabeled: one line that says what to give
    assert main(['calibrate', '--weights', random_checkpoint, '--thresholds']) == 2
    assert '--unlabeled' in capsys.readouterr().err


def test_sml_standardises_the_max_logit_by_its_predicted_class():
    import torch
    from anomseg_ros.errors import ConfigError
    from anomseg_ros.scoring import create_scorer
    logits = torch.tensor([[[[5.0, 1.0]], [[2.0, 3.0]]]])  # (1, 2 classes, 1, 2)
    scorer = create_scorer('sml', num_inlier_classes=2,
                           class_stats={'mean': [4.0, 2.0], 'std': [0.5, 2.0]})
    # pixel 0: class 0, max 5 -> -(5 - 4) / 0.5 = -2; pixel 1: class 1, max 3 -> -(3 - 2) / 2
    assert scorer(logits)[0, 0].tolist() == pytest.approx([-2.0, -0.5])
    with pytest.raises(ConfigError, match='--class-stats'):
        create_scorer('sml', num_inlier_classes=2, class_stats={})


def test_calibrate_class_stats_from_unlabeled_frames_feeds_sml(tmp_path, random_checkpoint,
                                                               capsys):
    import torch
    from anomseg_ros.evaluation.calibration import class_statistics
    frames = _frames(tmp_path / 'frames', count=2, size_hw=(64, 128))
    out = str(tmp_path / 'stats.pt')
    assert main(['calibrate', '--weights', random_checkpoint, '--class-stats', '--unlabeled',
                 frames, '--out', out, '--device', 'cpu', '--runtime', 'torch']) == 0
    assert 'max logit per predicted class on 2 unlabeled frames' in capsys.readouterr().out
    detector = Detector.from_checkpoint(out, scorer='sml', device='cpu', runtime='torch',
                                        precision='fp32')
    stats = detector.info.class_stats
    assert stats['frames'] == 2 and len(stats['mean']) == detector.info.num_inlier_classes
    # the statistics by hand: the max logit's mean and spread over each class's pixels
    images = [np.asarray(__import__('PIL.Image').Image.open(os.path.join(frames, f)))
              for f in sorted(os.listdir(frames))]
    values, classes = torch.cat([detector.logits([image]) for image in images])[
        :, :detector.info.num_inlier_classes].max(dim=1)
    again = class_statistics(detector, images)
    for c in range(detector.info.num_inlier_classes):
        chosen = values[classes == c].double()
        if chosen.numel() >= 100:
            assert again['mean'][c] == pytest.approx(float(chosen.mean()), rel=1e-6)
            assert again['std'][c] == pytest.approx(float(chosen.std(unbiased=False)),
                                                    rel=1e-4, abs=1e-6)
        else:
            assert detector.info.class_names[c] in again['pooled']
    result = detector.predict(images[0])
    assert np.isfinite(result.score_map).all()
    # the node's refusal of sml on a checkpoint without statistics says what to run
    assert main(['eval', frames, '--weights', random_checkpoint, '--scorers', 'sml']) == 2
    assert '--class-stats' in capsys.readouterr().err
