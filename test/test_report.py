"""The evaluation report: paper-style Markdown table, curves, examples, component metrics."""
import json

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from anomseg_ros.cli.main import main
from anomseg_ros.evaluation import AnomalyMetrics

from tiny_data import write_benchmark


def test_best_f1_threshold_matches_sklearn():
    rng = np.random.default_rng(0)
    label = (rng.random((50, 60)) < 0.1).astype(np.uint8)
    score = (rng.normal(size=label.shape) + 2 * label).astype(np.float32)
    metrics = AnomalyMetrics()
    metrics.update(score, label)
    precision, recall, thresholds = precision_recall_curve(label.ravel(), score.ravel())
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = thresholds[np.argmax(f1[:-1])]
    assert metrics.best_f1_threshold() == pytest.approx(best, rel=1e-3)
    points = metrics.curve_points(max_points=50)
    assert len(points['recall']) <= 50 and points['recall'][-1] == pytest.approx(1.0)


def test_eval_report_writes_table_curves_examples_and_components(tmp_path, random_checkpoint):
    root = write_benchmark(tmp_path / 'RoadAnomaly21', 3, box=(20, 40, 30, 70), seed=1)
    out = tmp_path / 'report'
    assert main(['eval', str(root), '--weights', random_checkpoint, '--scorers',
                 'msp,maxlogit', '--report', str(out), '--examples', '2']) == 0
    text = (out / 'report.md').read_text()
    assert '| scorer | RoadAnomaly21 AuPRC | RoadAnomaly21 FPR95 |' in text
    assert '| msp |' in text and '| maxlogit |' in text and 'mean F1' in text
    assert (out / 'curves_RoadAnomaly21.png').stat().st_size > 1000
    figures = sorted((out / 'examples').glob('*.jpg'))
    assert len(figures) == 2
    for figure in figures:  # every figure is linked from the report
        assert f'](examples/{figure.name})' in text
    data = json.loads((out / 'report.json').read_text())
    msp = data['results']['RoadAnomaly21']['scorers']['msp']
    components = msp['components']
    assert components['num_gt_components'] == 3  # one object per image
    assert np.isfinite(components['threshold'])
    # the anomaly track's minimum sizes, stated in the JSON and the report
    assert (components['track'], components['min_gt_size'], components['min_pred_size']) == \
        ('anomaly', 100, 500)
    assert 'anomaly-track minimum sizes: ground-truth objects 100 px, predicted segments 500 px' \
        in text
    # every row says what it was computed with, and at which resolution
    assert msp['settings'] == {'temperature': 1.0} and msp['resolution'] == 'network'
    assert '| msp | ' in text and 'temperature=1 (default) |' in text
    assert '## AuPRC / FPR95 at network resolution (' in text
    examples = data['results']['RoadAnomaly21']['examples']
    assert [e['why'] for e in examples][0] == 'most anomaly pixels'
    rerendered = tmp_path / 'again'
    assert main(['report', str(out / 'report.json'), '--out', str(rerendered)]) == 0
    assert (rerendered / 'report.md').read_text() == text
    assert sorted(p.name for p in (rerendered / 'examples').glob('*.jpg')) == \
        [f.name for f in figures]


def test_examples_show_anomalies_and_the_worst_false_alarms(tmp_path):
    """pick_examples: the images with the most anomaly pixels first, then the one where the
    best scorer raises the most false alarms at its threshold."""
    import cv2
    from anomseg_ros.evaluation.anomaly import pick_examples
    cache = str(tmp_path)
    kept = []
    for index, (anomaly_pixels, alarms) in enumerate(((0, 50), (4, 0), (9, 0), (0, 3))):
        label = np.zeros((10, 10), np.uint8)
        label.flat[:anomaly_pixels] = 1
        score = np.zeros((10, 10), np.float16)
        score.flat[:anomaly_pixels] = 1
        score.flat[anomaly_pixels:anomaly_pixels + alarms] = 1
        np.save(f'{cache}/{index}_label.npy', label)
        np.save(f'{cache}/{index}_good.npy', score)
        np.save(f'{cache}/{index}_msp.npy', score * 0)
        cv2.imwrite(f'{cache}/{index}_rgb.jpg', np.zeros((10, 10, 3), np.uint8))
        kept.append((index, f'img{index}', anomaly_pixels, 1.0))
    results = {'msp': {'auprc': 0.1}, 'good': {'auprc': 0.9, 'mask': {'threshold': 0.5}}}
    pictures = pick_examples(cache, kept, results, ['msp', 'good'], 3)
    assert [(p['name'], p['why']) for p in pictures] == [
        ('img2', 'most anomaly pixels'), ('img1', 'most anomaly pixels'),
        ('img0', 'most false alarms of good (50 pixels)')]
    assert list(pictures[0]['scores']) == ['good', 'msp']  # the best and the default


def test_eval_refuses_a_learned_methods_score_on_a_plain_checkpoint(
        tmp_path, random_checkpoint, capsys):
    root = write_benchmark(tmp_path / 'RoadAnomaly21', 1, seed=1)
    for method in ('pebal', 'sleeg'):
        assert main(['eval', str(root), '--weights', random_checkpoint, '--scorers',
                     f'msp,{method}']) == 2
        err = capsys.readouterr().err
        assert f'score of a {method.upper()}-trained model' in err and 'Traceback' not in err


def test_eval_table_names_the_resolution_and_the_temperature_used(
        tmp_path, random_checkpoint, capsys):
    root = write_benchmark(tmp_path / 'RoadAnomaly21', 2, seed=1)
    assert main(['eval', str(root), '--weights', random_checkpoint, '--scorers',
                 'msp,temperature,maxlogit', '--temperature', '2', '--resolution', 'label',
                 '--json', str(tmp_path / 'r.json')]) == 0
    out = capsys.readouterr().out
    assert '(in %, at label resolution)  settings' in out
    assert 'temperature=2 (given)' in out and 'none' in out
    data = json.loads((tmp_path / 'r.json').read_text())
    scorers = data['results']['RoadAnomaly21']['scorers']
    assert scorers['temperature']['settings'] == {'temperature': 2.0}
    assert scorers['maxlogit']['resolution'] == 'label' and data['resolution'] == 'label'


def test_report_refuses_a_file_that_is_not_a_report(tmp_path, capsys):
    bad = tmp_path / 'x.json'
    bad.write_text('{"something": 1}')
    assert main(['report', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'x.json' in capsys.readouterr().err
