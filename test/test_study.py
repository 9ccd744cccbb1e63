"""Issue 5 end to end: training the other backbones, losses, void and a frozen self-supervised
ResNet-50; temperature calibration; the study run that writes the papers' tables."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from anomseg_ros.checkpoint import load_model, ModelInfo, read_checkpoint
from anomseg_ros.cli.main import main
from anomseg_ros.data.images import write_gray, write_rgb
from anomseg_ros.evaluation.calibration import (choose_temperature, parse_grid,
                                                search_temperature)
from anomseg_ros.errors import ConfigError
from anomseg_ros.pipeline import Detector, make_scorer

from test_backbones import _torchvision_resnet50_state, _write_ssl
from test_training import _scene, TRAIN_ARGS, write_tiny_cityscapes


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    return write_tiny_cityscapes(tmp_path_factory.mktemp('cityscapes'))


def _track(root, count=3, seed=0):
    """A tiny anomaly track: scenes of the tiny Cityscapes with a grey square as anomaly."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, _ = _scene(i)
        label = np.zeros(image.shape[:2], np.uint8)
        top, left = rng.integers(4, 20), rng.integers(4, 44)
        image[top:top + 8, left:left + 12] = (200, 200, 40)
        label[top:top + 8, left:left + 12] = 1
        label[:2] = 255
        write_rgb(str(root / 'images' / f'{i}.png'), image)
        write_gray(str(root / 'labels_masks' / f'{i}.png'), label)
    return str(root)


def _train(cityscapes_root, out, *extra):
    return main(['train', '--data', cityscapes_root, '--out', str(out), *TRAIN_ARGS, *extra])


# --- training the issue-5 variants ---------------------------------------------------------------

@pytest.mark.parametrize('backbone,loss', [('enet', 'eiml+focal'), ('bisenetv2', 'logitnorm+ce'),
                                           ('bisenetv1', 'focal')])
def test_train_other_backbones_with_void_and_losses(cityscapes_root, tmp_path, backbone, loss):
    assert _train(cityscapes_root, tmp_path, '--backbone', backbone, '--loss', loss,
                  '--void') == 0
    model, info = load_model(str(tmp_path / 'last.pt'))
    assert (info.backbone, info.num_classes, info.void_channel) == (backbone, 20, 19)
    assert info.head == ('isomax+' if 'eiml' in loss else 'linear')
    assert read_checkpoint(str(tmp_path / 'last.pt'))['args']['loss'] == loss
    detector = Detector.from_checkpoint(str(tmp_path / 'last.pt'), scorer='void', device='cpu')
    result = detector.predict(_scene(1)[0])
    assert result.score_map.shape == (32, 64) and np.isfinite(result.score_map).all()
    assert 0 <= result.score_map.min() and result.score_map.max() <= 1


def test_void_training_starts_from_a_19_class_model(cityscapes_root, tmp_path):
    assert _train(cityscapes_root, tmp_path / 'a') == 0
    source, _ = load_model(str(tmp_path / 'a' / 'last.pt'))
    assert _train(cityscapes_root, tmp_path / 'b', '--void', '--init-weights',
                  str(tmp_path / 'a' / 'last.pt'), '--epochs', '1') == 0
    _, info = load_model(str(tmp_path / 'b' / 'last.pt'))
    assert info.num_classes == 20 and info.void_channel == 19
    from anomseg_ros.training.train import load_init_weights
    model, _ = load_init_weights(str(tmp_path / 'a' / 'last.pt'), backbone='erfnet',
                                 num_classes=20)
    assert torch.equal(model.decoder.output_conv.weight[:, :19],
                       source.decoder.output_conv.weight)


def test_frozen_self_supervised_resnet50_trains_only_its_classifier(cityscapes_root, tmp_path):
    state = _torchvision_resnet50_state(seed=1)
    ssl = str(tmp_path / 'moco.pth.tar')
    _write_ssl(ssl, 'mocov2', state)
    assert _train(cityscapes_root, tmp_path / 'run', '--backbone', 'resnet50',
                  '--pretrained-backbone', ssl, '--freeze-backbone') == 0
    model, info = load_model(str(tmp_path / 'run' / 'last.pt'))
    assert info.backbone == 'resnet50' and info.num_classes == 19
    trained = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith('fc.'):
            assert torch.equal(trained[key], value), key  # weights and batch-norm statistics
    torch.manual_seed(3)  # the classifier did train
    untouched = torch.nn.Conv2d(2048, 19, 1)
    assert not torch.equal(model.classifier.weight, untouched.weight)


def test_pretrained_backbone_is_refused_for_other_backbones(cityscapes_root, tmp_path, capsys):
    ssl = str(tmp_path / 'bt.pth')
    _write_ssl(ssl, 'barlowtwins', _torchvision_resnet50_state())
    assert _train(cityscapes_root, tmp_path / 'run', '--backbone', 'enet',
                  '--pretrained-backbone', ssl) == 2
    assert 'takes none' in capsys.readouterr().err
    assert _train(cityscapes_root, tmp_path / 'run2', '--loss', 'ce+dice') == 2
    assert 'the losses are ce, focal, logitnorm, eiml' in capsys.readouterr().err


# --- calibration ---------------------------------------------------------------------------------

class _FixedLogits:
    """A detector stand-in whose network outputs ``logits`` for any image."""

    def __init__(self, logits):
        self._logits = logits
        self.info = ModelInfo(num_classes=3, class_names=['a', 'b', 'c'], void_channel=None)

    def logits(self, images):
        return self._logits


def test_calibration_picks_the_only_temperature_that_separates_the_pixels():
    # Pixel A (anomaly, logits 1,0,0) ranks above inlier R (6,6,0) only for T > 1.479, and
    # anomaly V (5.95,5.95,0) above inlier U (1.02,0,0) only for T < 1.516 (solved numerically):
    # on the grid 0.5..2.0 only T = 1.5 puts both anomalies above both inliers (AuPRC 1).
    logits = torch.tensor([[1.0, 0, 0], [5.95, 5.95, 0], [6, 6, 0], [1.02, 0, 0]])
    logits = logits.T.reshape(1, 3, 2, 2)
    label = np.array([[1, 1], [0, 0]], np.uint8)
    search = search_temperature(_FixedLogits(logits), [('x', None, label)], parse_grid(
        '0.5:2.0:0.1'))
    assert search['temperature'] == 1.5
    assert search['results'][1.5]['auprc'] == pytest.approx(1.0)
    assert all(r['auprc'] < 0.99 for t, r in search['results'].items() if t != 1.5)


def test_grid_parsing_and_ties():
    assert parse_grid('0.5:0.8:0.1') == (0.5, 0.6, 0.7, 0.8)
    assert parse_grid('0.5,0.75,1.1') == (0.5, 0.75, 1.1)
    for bad in ('0:1:0', 'a,b', '-1,2'):
        with pytest.raises(ConfigError, match='temperature grid'):
            parse_grid(bad)
    tied = {0.5: {'auprc': 0.4, 'fpr95': 0.3}, 0.9: {'auprc': 0.4, 'fpr95': 0.3},
            2.0: {'auprc': 0.4, 'fpr95': 0.2}}
    assert choose_temperature(tied) == 2.0  # the lower FPR95 wins a tie
    del tied[2.0]
    assert choose_temperature(tied) == 0.9  # then the temperature closest to 1


def test_calibrate_writes_the_temperature_the_node_then_uses(tmp_path, random_checkpoint,
                                                             capsys):
    track = _track(tmp_path / 'track')
    out = str(tmp_path / 'calibrated.pt')
    assert main(['calibrate', track, '--weights', random_checkpoint, '--grid', '0.5,1.5,3',
                 '--out', out, '--device', 'cpu', '--json', str(tmp_path / 'c.json')]) == 0
    printed = capsys.readouterr().out
    record = json.load(open(tmp_path / 'c.json'))
    best = record['temperature']
    assert f'temperature {best:g} written to {out}' in printed
    _, info = load_model(out)
    assert info.temperature == best
    assert read_checkpoint(out)['calibration']['results'].keys() == {'0.5', '1.5', '3'}
    assert make_scorer('msp', info).temperature == best        # the node's default
    assert make_scorer('msp', info, temperature=2.0).temperature == 2.0  # unless told
    assert make_scorer('msp', info).sources == {'temperature': 'checkpoint calibration'}
    # the temperature scorer keeps its documented T = 1.5 (paper 000) whatever was calibrated
    assert make_scorer('temperature', info).temperature == 1.5
    assert make_scorer('temperature', info).describe() == 'temperature=1.5 (default)'
    # without --out nothing is written, and it says how to keep the result
    assert main(['calibrate', track, '--weights', random_checkpoint, '--grid', '1,2',
                 '--device', 'cpu']) == 0
    assert 'add --out CKPT or --in-place' in capsys.readouterr().out


def test_calibration_warns_when_the_best_temperature_is_the_edge_of_its_grid(
        tmp_path, random_checkpoint, capsys):
    from anomseg_ros.evaluation.calibration import grid_edge, wider_grid
    assert grid_edge(2.0, (0.5, 1.0, 2.0)) == 'high' and grid_edge(0.5, (0.5, 2.0)) == 'low'
    assert grid_edge(1.0, (0.5, 1.0, 2.0)) == '' and grid_edge(1.0, (1.0,)) == ''
    assert wider_grid(2.0, (0.5, 1.0, 2.0), 'high') == '2:3.5:0.15'
    assert wider_grid(0.5, (0.5, 2.0), 'low') == '0.05:0.5:0.045'
    track = _track(tmp_path / 'track')
    out = str(tmp_path / 'calibrated.pt')
    # a grid of two: whichever wins sits on an edge
    assert main(['calibrate', track, '--weights', random_checkpoint, '--grid', '0.5,3',
                 '--out', out, '--device', 'cpu']) == 0
    captured = capsys.readouterr()
    best = read_checkpoint(out)['calibration']['temperature']
    edge = 'low' if best == 0.5 else 'high'
    assert f'WARNING: the best temperature {best:g} is the {edge}est of the grid (0.5-3)' \
        in captured.err
    assert '--grid ' in captured.err
    assert read_checkpoint(out)['calibration']['grid_edge'] == edge


def test_calibrated_thresholds_are_what_threshold_auto_uses(tmp_path, random_checkpoint,
                                                            capsys):
    from anomseg_ros.pipeline import Detector
    track = _track(tmp_path / 'track')
    out = str(tmp_path / 'thresholds.pt')
    assert main(['calibrate', track, '--weights', random_checkpoint, '--thresholds',
                 '--scorers', 'msp,maxlogit', '--out', out, '--device', 'cpu', '--json',
                 str(tmp_path / 't.json')]) == 0
    printed = capsys.readouterr().out
    record = json.load(open(tmp_path / 't.json'))
    assert record['rule'] == 'tpr95' and set(record['points']) == {'msp', 'maxlogit'}
    assert 'thresholds written to' in printed
    _, info = load_model(out)
    assert info.thresholds == {k: p['threshold'] for k, p in record['points'].items()}
    for point in record['points'].values():  # the rule: 95% of the anomaly pixels found
        assert point['tpr'] >= 0.95
    detector = Detector.from_checkpoint(out, scorer='maxlogit', device='cpu')
    assert detector.threshold == info.thresholds['maxlogit']
    assert detector.threshold_source == 'calibrated'
    detector.set_scorer('msp')  # auto follows the scorer
    assert detector.threshold == info.thresholds['msp']
    detector.set_threshold(0.25)
    detector.set_scorer('maxentropy')  # a given number stays
    assert detector.threshold == 0.25 and detector.threshold_source == 'given'
    detector.set_threshold('auto')  # no calibrated value for maxentropy: the default
    assert detector.threshold == 0.5 and 'no calibrated threshold' in detector.threshold_source
    assert main(['info', out]) == 0
    assert 'thresholds' in capsys.readouterr().out


# --- the study -----------------------------------------------------------------------------------

def test_study_trains_evaluates_times_and_resumes(tmp_path, cityscapes_root, capsys):
    track = _track(tmp_path / 'obstacle')
    study = {'data': cityscapes_root, 'tracks': [track], 'scorers': ['msp', 'maxlogit', 'void'],
             # one loading process: the second training forks its worker after the first
             # evaluation ran OpenMP in this process, which hung before the fork server
             'budget': {'epochs': 1, 'batch_size': 2, 'input_size': '64x32', 'workers': 1,
                        'device': 'cpu'},
             'models': [{'name': 'enet_void', 'backbone': 'enet', 'void': True},
                        {'name': 'erfnet_eiml_fl', 'backbone': 'erfnet', 'loss': 'eiml+focal'},
                        {'name': 'enet_T', 'weights_from': 'enet_void', 'calibrate': track}],
             'speed_sizes': ['64x32'], 'speed_repeats': 1, 'device': 'cpu'}
    path = tmp_path / 'study.yaml'
    path.write_text(yaml.safe_dump(study))
    out = tmp_path / 'out'
    assert main(['study', str(path), '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert '[enet_void] training:' in printed and '[enet_void] evaluating' in printed
    assert '| enet_void | enet | CE | 20 (void) |' in printed
    assert '| erfnet_eiml_fl | erfnet | EIML + FL | 19 |' in printed
    assert '[enet_T] calibrating the MSP temperature on obstacle' in printed
    assert printed.count('] training:') == 2  # enet_T reuses enet_void's checkpoint
    assert '| enet_void | void |' in printed and '| erfnet_eiml_fl | void |' not in printed
    assert '## Speed and memory' in printed and '| enet |' in printed
    report = json.load(open(out / 'study.json'))
    assert set(report['models']) == {'enet_void', 'erfnet_eiml_fl', 'enet_T'}
    enet = report['models']['enet_void']
    assert 0 <= enet['miou'] <= 1 and enet['tracks']['obstacle']['void']['auprc'] > 0
    assert report['speed']['erfnet']['sizes']['64x32']['median_ms'] > 0
    calibrated = report['models']['enet_T']
    assert calibrated['weights'].endswith('calibrated.pt')
    assert calibrated['temperature'] == read_checkpoint(calibrated['weights'])['calibration'][
        'temperature']
    # a rerun trains and evaluates nothing again
    stamp = os.path.getmtime(out / 'enet_T' / 'results.json')
    assert main(['study', str(path), '--out', str(out), '--no-speed']) == 0
    printed = capsys.readouterr().out
    assert '] training:' not in printed and '] evaluating' not in printed
    assert os.path.getmtime(out / 'enet_T' / 'results.json') == stamp


def test_study_file_errors_name_the_problem(tmp_path, capsys):
    path = tmp_path / 'bad.yaml'
    path.write_text(yaml.safe_dump({'models': [{'name': 'a', 'backbone': 'enet',
                                                'learning_rate': 1}], 'data': '.'}))
    assert main(['study', str(path)]) == 2
    assert "unknown options ['learning_rate']" in capsys.readouterr().err
    path.write_text('models: [')
    assert main(['study', str(path)]) == 2
    assert 'not valid YAML' in capsys.readouterr().err


def test_backbone_benchmark_prints_the_speed_and_memory_table():
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'bench',
                          'bench_backbones.py')
    done = subprocess.run([sys.executable, script, '--backbones', 'enet,erfnet', '--sizes',
                           '64x32', '--repeats', '1', '--device', 'cpu'],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert '| backbone | parameters | 64x32 ms | 64x32 MiB |' in done.stdout
    assert '| enet | 0.35 M |' in done.stdout and '| erfnet | 2.07 M |' in done.stdout
    assert 'peak RSS' in done.stdout
