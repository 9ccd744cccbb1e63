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
    assert len(list((out / 'examples').glob('*.png'))) == 2
    data = json.loads((out / 'report.json').read_text())
    components = data['results']['RoadAnomaly21']['scorers']['msp']['components']
    assert components['num_gt_components'] == 3  # one object per image
    assert np.isfinite(components['threshold'])
    rerendered = tmp_path / 'again'
    assert main(['report', str(out / 'report.json'), '--out', str(rerendered)]) == 0
    assert (rerendered / 'report.md').read_text() == text


def test_report_refuses_a_file_that_is_not_a_report(tmp_path, capsys):
    bad = tmp_path / 'x.json'
    bad.write_text('{"something": 1}')
    assert main(['report', str(bad), '--out', str(tmp_path / 'o')]) == 2
    assert 'x.json' in capsys.readouterr().err
