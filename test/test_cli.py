"""The anomseg command line: detect, info, eval, and the errors a user sees."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from anomseg_ros.cli.main import main
from anomseg_ros.data.images import read_label, write_gray, write_rgb

from tiny_data import png_claiming, write_benchmark


def test_every_verb_has_help(capsys):
    for verb in ('detect', 'info', 'eval', 'demo'):
        with pytest.raises(SystemExit) as exit_:
            main([verb, '--help'])
        assert exit_.value.code == 0
        assert 'usage: anomseg' in capsys.readouterr().out


def test_console_entry_point_is_installed():
    exe = os.path.join(os.path.dirname(sys.executable), 'anomseg')
    result = subprocess.run([exe, '--version'], capture_output=True, text=True)
    assert result.returncode == 0 and 'anomseg_ros' in result.stdout


def test_detect_writes_every_output(tmp_path, random_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8)
    write_rgb(str(tmp_path / 'frame.png'), image)
    code = main(['detect', str(tmp_path / 'frame.png'), '--out', str(tmp_path / 'out'),
                 '--weights', random_checkpoint, '--threshold', '0.9'])
    assert code == 0
    out = tmp_path / 'out'
    score = np.load(out / 'frame_score.npy')
    assert score.shape == (40, 72) and score.dtype == np.float32
    mask = read_label(str(out / 'frame_mask.png'))
    np.testing.assert_array_equal(mask == 255, score >= 0.9)
    assert read_label(str(out / 'frame_labels.png')).shape == (40, 72)
    for suffix in ('color', 'score', 'overlay'):
        assert (out / f'frame_{suffix}.png').is_file()


def test_detect_names_an_unreadable_image_and_fails(tmp_path, random_checkpoint, capsys):
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    code = main(['detect', str(bad), '--out', str(tmp_path / 'out'), '--weights',
                 random_checkpoint])
    assert code == 1
    assert 'broken.png' in capsys.readouterr().out


def test_detect_writes_no_mask_from_non_finite_scores_and_fails(tmp_path, capsys,
                                                                random_checkpoint):
    import torch
    from anomseg_ros.checkpoint import load_model, save_checkpoint
    model, info = load_model(random_checkpoint)
    with torch.no_grad():
        next(p for name, p in model.named_parameters() if name.endswith('weight')).fill_(
            float('nan'))
    broken = str(tmp_path / 'nan.pt')
    save_checkpoint(broken, model, info)
    write_rgb(str(tmp_path / 'frame.png'), np.zeros((40, 72, 3), np.uint8))
    code = main(['detect', str(tmp_path / 'frame.png'), '--out', str(tmp_path / 'out'),
                 '--weights', broken, '--runtime', 'torch'])
    out = capsys.readouterr().out
    assert code == 1 and 'frame.png' in out and 'NaN or infinite' in out
    assert not (tmp_path / 'out' / 'frame_mask.png').exists()


def test_random_weights_are_announced(tmp_path, capsys):
    write_rgb(str(tmp_path / 'f.png'), np.zeros((16, 16, 3), np.uint8))
    main(['detect', str(tmp_path / 'f.png'), '--out', str(tmp_path), '--weights', 'random',
          '--input-size', '64x32'])
    assert 'RANDOMLY INITIALISED' in capsys.readouterr().out


def test_missing_weights_is_a_clear_error(tmp_path, capsys):
    code = main(['info', str(tmp_path / 'absent.pth')])
    assert code == 2
    assert 'absent.pth' in capsys.readouterr().err


def test_info_reports_metadata(random_checkpoint, capsys):
    assert main(['info', random_checkpoint, '--json']) == 0
    info = json.loads(capsys.readouterr().out)
    assert info['backbone'] == 'erfnet' and info['num_classes'] == 20
    assert info['parameters'] == 2066836 and info['input_size_hw'] == [64, 128]


def test_eval_writes_a_json_report(tmp_path, random_checkpoint):
    root = write_benchmark(tmp_path / 'RoadAnomaly21', 2, box=(10, 30, 10, 40), seed=1)
    report = tmp_path / 'report.json'
    assert main(['eval', str(root), '--weights', random_checkpoint, '--scorers',
                 'msp,energy', '--json', str(report)]) == 0
    data = json.loads(report.read_text())
    result = data['results']['RoadAnomaly21']
    assert set(result['scorers']) == {'msp', 'energy'}
    assert 0.0 <= result['scorers']['msp']['auprc'] <= 1.0
    assert result['scorers']['msp']['num_images'] == 2
    assert result['labels'].startswith('smiyc')
    # how it was made: the runtime, precision and why auto took them
    runtime = data['runtime']
    assert runtime['runtime'] in ('openvino', 'torch') and runtime['precision'] in (
        'fp32', 'bf16') and runtime['reason'].startswith('auto')


def test_no_weights_without_a_bundled_model_says_what_to_do(monkeypatch):
    from anomseg_ros import paths
    from anomseg_ros.errors import CheckpointError
    monkeypatch.setattr(paths, 'default_weights', lambda: None)
    with pytest.raises(CheckpointError, match='erfnet_synthetic.pt is not installed.*random'):
        paths.resolve_weights('')


def _benchmark(root, rng, count=3):
    for i in range(count):
        write_rgb(str(root / 'images' / f'{i}.png'),
                  rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))
        label = (rng.random((32, 48)) < 0.2).astype(np.uint8)
        label[:3] = 255
        write_gray(str(root / 'labels_masks' / f'{i}.png'), label)


def test_eval_scores_agrees_with_sklearn(tmp_path):
    from sklearn.metrics import average_precision_score, roc_curve
    rng = np.random.default_rng(2)
    root = tmp_path / 'RoadObsticle21'
    _benchmark(root, rng)
    scores_dir = tmp_path / 'scores'
    scores_dir.mkdir()
    pooled_scores, pooled_labels = [], []
    for i in range(3):
        label = read_label(str(root / 'labels_masks' / f'{i}.png'))
        score = (rng.normal(size=label.shape) + 1.2 * (label == 1)).astype(np.float32)
        np.save(scores_dir / f'{i}.npy', score)
        pooled_scores.append(score[label != 255])
        pooled_labels.append(label[label != 255])
    scores, labels = np.concatenate(pooled_scores), np.concatenate(pooled_labels)
    report = tmp_path / 'r.json'
    assert main(['eval', str(root), '--scores', str(scores_dir), '--json', str(report)]) == 0
    result = json.loads(report.read_text())['results']['RoadObsticle21']['scorers']['scores']
    fpr, tpr, _ = roc_curve(labels, scores)
    assert result['auprc'] == pytest.approx(average_precision_score(labels, scores), abs=0.005)
    assert result['fpr95'] == pytest.approx(np.interp(0.95, tpr, fpr), abs=0.005)


def test_eval_scores_names_a_missing_or_misshaped_map(tmp_path, capsys):
    root = tmp_path / 'RoadAnomaly21'
    _benchmark(root, np.random.default_rng(3), count=2)
    scores_dir = tmp_path / 'scores'
    scores_dir.mkdir()
    np.save(scores_dir / '0.npy', np.zeros((32, 48), np.float32))
    assert main(['eval', str(root), '--scores', str(scores_dir)]) == 2
    assert '1.npy' in capsys.readouterr().err
    np.save(scores_dir / '1.npy', np.zeros((10, 10), np.float32))
    assert main(['eval', str(root), '--scores', str(scores_dir)]) == 2
    assert 'label' in capsys.readouterr().err


def test_eval_cityscapes_layout_reports_miou(tmp_path, random_checkpoint):
    rng = np.random.default_rng(4)
    for i in range(2):
        stem = f'city_{i:06d}_000019'
        write_rgb(str(tmp_path / 'leftImg8bit' / 'val' / 'city' / f'{stem}_leftImg8bit.png'),
                  rng.integers(0, 256, (64, 128, 3), dtype=np.uint8))
        write_gray(str(tmp_path / 'gtFine' / 'val' / 'city' /
                       f'{stem}_gtFine_labelTrainIds.png'),
                   rng.integers(0, 19, (64, 128)).astype(np.uint8))
    report = tmp_path / 'r.json'
    assert main(['eval', str(tmp_path), '--weights', random_checkpoint, '--json',
                 str(report)]) == 0
    (name, result), = json.loads(report.read_text())['results'].items()
    assert name.endswith('/val')
    segmentation = result['segmentation']
    assert segmentation['num_images'] == 2 and 0.0 <= segmentation['miou'] <= 1.0
    assert len(segmentation['per_class_iou']) == 19


def test_info_export_drops_the_optimizer_and_keeps_the_record(tmp_path, capsys):
    import torch
    from anomseg_ros.backbones import create_backbone
    from anomseg_ros.checkpoint import ModelInfo, read_checkpoint, save_checkpoint
    model = create_backbone('erfnet', num_classes=19)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(1, 3, 32, 64)).mean().backward()
    optimizer.step()
    source, exported = str(tmp_path / 'last.pt'), str(tmp_path / 'model.pt')
    save_checkpoint(source, model, ModelInfo(num_classes=19, void_channel=None),
                    optimizer=optimizer.state_dict(), epoch=7, best_miou=0.5,
                    history=[{'miou': 0.5}])
    assert main(['info', source, '--export', exported]) == 0
    kept = read_checkpoint(exported)
    assert 'optimizer' not in kept and kept['epoch'] == 7 and kept['history'] == [{'miou': 0.5}]
    assert os.path.getsize(exported) < 0.5 * os.path.getsize(source)
    assert 'best_miou' in capsys.readouterr().out


def test_eval_names_an_image_that_claims_too_many_pixels(tmp_path, random_checkpoint, capsys):
    root = write_benchmark(tmp_path / 'RoadAnomaly21', 2)
    (root / 'images' / '1.png').write_bytes(png_claiming(100_000, 100_000))
    code = main(['eval', str(root), '--weights', random_checkpoint, '--scorers', 'msp'])
    err = capsys.readouterr().err
    assert code == 2 and '1.png' in err and 'refused before decoding' in err, err


def test_an_empty_checkpoint_is_named_everywhere(tmp_path, capsys):
    empty = tmp_path / 'empty.pt'
    empty.write_bytes(b'')
    write_rgb(str(tmp_path / 'f.png'), np.zeros((16, 16, 3), np.uint8))
    runs = [['info', str(empty)],
            ['detect', str(tmp_path / 'f.png'), '--out', str(tmp_path / 'o'), '--weights',
             str(empty)],
            ['train', '--data', str(tmp_path), '--out', str(tmp_path / 'run'), '--resume',
             str(empty)]]
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert 'empty.pt' in err and 'empty (0 bytes)' in err, (argv, err)


def test_writing_where_it_cannot_is_one_line(tmp_path, capsys):
    (tmp_path / 'a_file').write_text('not a folder')
    code = main(['synth', str(tmp_path / 'a_file' / 'out'), '--train', '1', '--val', '0',
                 '--obstacle', '0', '--anomaly', '0', '--blended', '0', '--outliers', '0',
                 '--size', '64x32', '--workers', '1'])
    err = capsys.readouterr().err
    assert code == 2 and 'a_file' in err and len(err.strip().splitlines()) == 1, err
