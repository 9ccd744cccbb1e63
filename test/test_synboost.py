"""SynBoost (paper 002): the maps H, D and V against hand computations, the training data
generator's labels, each training stage lowering its loss with everything else frozen, the
ensemble search on a crafted example, ``anomseg train-anomaly --method synboost`` end to end
(stages, resume, a mismatched segmentation model refused), and the scorer and the
``resynthesis`` topic through the live node."""
import math
import os

import numpy as np
import pytest
import torch

from anomseg_ros.checkpoint import load_model, read_checkpoint
from anomseg_ros.cli.main import main
from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.methods import get_method
from anomseg_ros.methods.synboost import data, ensemble
from anomseg_ros.methods.synboost.maps import perceptual_difference, uncertainty_maps
from anomseg_ros.methods.synboost.model import SynboostModel
from anomseg_ros.methods.synboost.networks import FeatureExtractor
from anomseg_ros.pipeline import Detector, make_scorer
from anomseg_ros.runtimes import openvino_from_checkpoint

from test_training import _scene, write_tiny_cityscapes
from tiny_data import write_benchmark

TINY = ['--epochs', '1', '--generator-epochs', '1', '--iters-per-epoch', '2', '--batch-size',
        '2', '--workers', '0', '--device', 'cpu', '--input-size', '64x32',
        '--ensemble-step', '0.25']


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    return write_tiny_cityscapes(tmp_path_factory.mktemp('cityscapes'))


@pytest.fixture(scope='module')
def track(tmp_path_factory):
    return str(write_benchmark(tmp_path_factory.mktemp('track'), 2, size_hw=(32, 64),
                               box=(10, 20, 20, 40)))


@pytest.fixture(scope='module')
def synboost_checkpoint(tmp_path_factory, cityscapes_root, random_checkpoint, outlier_dir,
                        track):
    out = str(tmp_path_factory.mktemp('synboost'))
    assert main(['train-anomaly', '--method', 'synboost', '--checkpoint', random_checkpoint,
                 '--data', cityscapes_root, '--outliers', outlier_dir, '--ensemble-tracks',
                 track, '--out', out, *TINY]) == 0
    return os.path.join(out, 'last.pt')


# --- the maps --------------------------------------------------------------------------------

def test_entropy_and_distance_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [30.0, 0.0, 0.0]]).T
    logits = logits.reshape(1, 3, 1, 3)
    entropy, distance = uncertainty_maps(logits)
    p = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    h = -(p * np.log2(p)).sum() / np.log2(3)
    np.testing.assert_allclose(entropy[0, 0].numpy(), [1.0, h, 0.0], atol=1e-5)
    np.testing.assert_allclose(distance[0, 0].numpy(), [1.0, 1 - p[0] + p[1], 0.0], atol=1e-5)


def test_perceptual_difference_by_hand():
    a1, b1 = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    b1[:, 1] = 3.0                                   # |diff| 1 and 3: mean over channels 2
    a2, b2 = torch.zeros(1, 1, 1, 1), torch.full((1, 1, 1, 1), -4.0)  # 4, brought to 2x2
    v = perceptual_difference([a1, a2], [b1, b2], (2, 2))
    np.testing.assert_allclose(v.numpy(), np.full((1, 2, 2), 6.0))
    # and at the input size: a layer at half resolution is interpolated up
    v = perceptual_difference([a1], [b1], (4, 4))
    np.testing.assert_allclose(v.numpy(), np.full((1, 4, 4), 2.0))


def test_feature_extractor_stops_after_its_last_layer_and_shares_the_segmenters_pass():
    from anomseg_ros.backbones import create_backbone
    torch.manual_seed(0)
    net = create_backbone('erfnet', num_classes=19).eval()
    calls = []
    net.decoder.output_conv.register_forward_hook(lambda *args: calls.append('decoder'))
    extractor = FeatureExtractor(net, type(net).feature_layers)
    x = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        features = extractor.extract(x)
        assert calls == []  # the decoder never ran
        logits, same = extractor.extract(x, full=True)
        assert calls == ['decoder'] and torch.equal(logits, net(x))
    assert [f.shape[1:] for f in features] == [(16, 16, 32), (64, 8, 16), (128, 4, 8)]
    assert all(torch.equal(a, b) for a, b in zip(features, same))
    assert [c for c in extractor.channels()] == [(16, 2), (64, 4), (128, 8)]


# --- the training data generator --------------------------------------------------------------

def _two_cars():
    labels = np.zeros((20, 30), np.uint8)            # road
    labels[2:8, 2:10] = 13                           # car 1
    labels[12:18, 15:25] = 13                        # car 2
    labels[0, :] = VOID_LABEL
    return torch.from_numpy(labels).long()


def test_label_swap_marks_exactly_the_swapped_instances():
    labels = _two_cars()
    instances = data.label_instances(labels.numpy(), min_area=10)
    assert len(instances) == 2
    altered, swapped = data.swap_labels(labels, 19, torch.Generator().manual_seed(0),
                                        probability=1.0, min_area=10)
    cars = labels == 13
    assert torch.equal(swapped, cars)
    assert (altered[cars] != 13).all() and (altered[cars] < 19).all()
    assert torch.equal(altered[~cars], labels[~cars])  # nothing else changes
    target = data.make_targets(labels[None], swapped[None])
    assert torch.equal(target[0] == 1, cars)
    assert (target[0][0] == VOID_LABEL).all() and (target[0][1:][~cars[1:]] == 0).all()
    # with a low probability still one instance is swapped
    _, swapped = data.swap_labels(labels, 19, torch.Generator().manual_seed(0),
                                  probability=0.0, min_area=10)
    assert swapped.sum() in (48, 60)


def test_training_samples_mark_swapped_instances_and_pasted_objects_and_nothing_else(
        outlier_dir):
    method = get_method('synboost')
    state = {'generator': torch.Generator().manual_seed(1), 'outliers': [], 'void_share': 0.5,
             'num_inlier': 19, 'mean': torch.zeros(3, 1, 1), 'std': torch.ones(3, 1, 1)}
    from anomseg_ros.methods.outliers import load_outliers
    state['outliers'] = load_outliers(outlier_dir)
    images = torch.rand(6, 3, 20, 30)
    labels = torch.stack([_two_cars()] * 6)
    original = images.clone()
    sample = method.training_sample(images, labels, state)
    assert set(sample['sources']) == {'swap', 'void'}
    cars = labels[0] == 13
    for i, source in enumerate(sample['sources']):
        target, semantic = sample['target'][i], sample['semantic'][i]
        if source == 'swap':  # whole cars given another class, nothing else
            swapped = semantic != labels[i]
            assert swapped.any() and torch.equal(target == 1, swapped)
            assert not (swapped & ~cars).any() and torch.equal(images[i], original[i])
            for car in data.label_instances(labels[i].numpy()):
                assert swapped[torch.from_numpy(car)].all() or \
                    not swapped[torch.from_numpy(car)].any()
        else:
            changed = (images[i] != original[i]).any(dim=0)
            assert changed.any() and torch.equal(target == 1, changed)
            assert (semantic == -1).all()  # the network sees the prediction
        assert (target[0][target[0] != 1] == VOID_LABEL).all()   # void row: ignored
        assert set(target.unique().tolist()) <= {0, 1, VOID_LABEL}
    # without the void source: label swaps only
    sample = method.training_sample(images, labels, {**state, 'void_share': 0.0})
    assert set(sample['sources']) == {'swap'}


# --- the training stages ------------------------------------------------------------------------

def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _train(model, method, part, steps, state):
    images = torch.stack([torch.from_numpy(_scene(i)[0]).permute(2, 0, 1).float() / 255
                          for i in range(2)])
    labels = torch.stack([torch.from_numpy(_scene(i)[1]).long() for i in range(2)])
    method.start_phase(model, part)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for step in range(steps):
        model.train()
        loss, _ = method.train_step(model, images.clone(), labels, dict(state), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_each_stage_lowers_its_loss_and_trains_only_its_part(random_checkpoint, outlier_dir):
    torch.manual_seed(0)
    base, info = load_model(random_checkpoint)
    method = get_method('synboost')
    model = SynboostModel(base, num_inlier=19)
    state = method.training_state(*_run(outlier_dir), info, torch.Generator().manual_seed(0))
    segmenter, dissimilarity = _snapshot(model.segmenter), _snapshot(model.dissimilarity)
    losses = _train(model, method, 'generator', 12, state)
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(torch.equal(v, segmenter[k]) for k, v in model.segmenter.state_dict().items())
    assert all(torch.equal(v, dissimilarity[k])
               for k, v in model.dissimilarity.state_dict().items())
    generator = _snapshot(model.generator)
    state['generator'] = torch.Generator().manual_seed(0)
    state['void_share'] = 0.0  # the same swaps every step: a loss that can only fall
    losses = _train(model, method, 'dissimilarity', 12, state)
    assert losses[-1] < losses[0], losses
    assert float(model.v_scale) != 1.0  # measured on the first batch
    assert all(torch.equal(v, generator[k]) for k, v in model.generator.state_dict().items())
    assert all(torch.equal(v, segmenter[k]) for k, v in model.segmenter.state_dict().items())


def _run(outliers, **fields):
    """A SynBoost run and its options as the library takes them (no command line)."""
    from anomseg_ros.methods.synboost.method import SynboostOptions
    from anomseg_ros.training.config import AnomalyTrainConfig
    return (AnomalyTrainConfig(method='synboost', checkpoint='x', data='x', out='x',
                               outliers=outliers),
            SynboostOptions(ensemble_tracks='x', **fields))


# --- the ensemble ---------------------------------------------------------------------------

def test_grid_search_finds_the_only_weights_that_separate_a_crafted_example():
    # anomalies score 0.6 on both the dissimilarity and V; inliers 1 on one of them, 0 on the
    # other: only equal weights on the two put every anomaly above every inlier
    maps = np.array([[0.6, 0, 0, 0.6]] * 10 + [[1, 0, 0, 0]] * 50 + [[0, 0, 0, 1]] * 50,
                    np.float32)
    labels = np.array([1] * 10 + [0] * 100, np.uint8)
    weights, best, rows = ensemble.search_weights(maps, labels, step=0.25)
    assert weights == (0.5, 0.0, 0.0, 0.5)
    assert best['auprc'] == pytest.approx(1.0) and best['fpr95'] == pytest.approx(0.0)
    assert len(rows) == len(ensemble.weight_grid(0.25)) == math.comb(4 + 3, 3)
    assert max(r['auprc'] for r in rows if r['weights'][3] == 0) < 0.5
    assert all(abs(sum(w) - 1) < 1e-9 for w in ensemble.weight_grid(0.1))
    with pytest.raises(ConfigError, match='divide 1'):
        ensemble.weight_grid(0.3)
    with pytest.raises(ConfigError, match='four|4 non-negative'):
        ensemble.parse_weights('1,2')
    assert ensemble.parse_weights('2,0,0,2') == (0.5, 0.0, 0.0, 0.5)


def test_ranking_metrics_agree_with_scikit_learn():
    from sklearn.metrics import average_precision_score, roc_curve
    rng = np.random.default_rng(0)
    labels = (rng.random(5000) < 0.05).astype(np.uint8)
    scores = np.round(rng.random(5000) + labels * 0.3, 2).astype(np.float32)  # with ties
    auprc, fpr95 = ensemble.ranking_metrics(scores, labels)
    fpr, tpr, _ = roc_curve(labels, scores)
    assert auprc == pytest.approx(average_precision_score(labels, scores), abs=1e-9)
    assert fpr95 == pytest.approx(np.interp(0.95, tpr, fpr), abs=1e-9)


# --- the command line and the pipeline -----------------------------------------------------

def test_train_anomaly_synboost_writes_a_checkpoint_the_detector_runs(synboost_checkpoint,
                                                                      random_checkpoint):
    _, info = load_model(synboost_checkpoint)
    saved = read_checkpoint(synboost_checkpoint)
    assert info.method == 'synboost' and info.num_classes == 24 and info.num_inlier_classes == 19
    assert saved['phases_done'] == {'generator': 1, 'dissimilarity': 1}
    assert [h['phase'] for h in saved['history']] == ['generator', 'dissimilarity']
    assert saved['ensemble']['weights'] == info.method_params['weights']
    assert set(saved['ensemble']['alone']) == set(ensemble.MAP_NAMES)
    for scorer in ('synboost', 'synboost_net', 'msp'):
        detector = Detector.from_checkpoint(synboost_checkpoint, scorer=scorer, device='cpu')
        result = detector.predict(_scene(2)[0])
        assert np.isfinite(result.score_map).all() and result.score_map.shape == (32, 64)
        assert result.labels.max() < 19 or (result.labels == 255).any()
        if scorer.startswith('synboost'):
            assert 0 <= result.score_map.min() and result.score_map.max() <= 1
    # runtime auto falls back to PyTorch on this refusal (test_runtimes), which comes before
    # anything is converted
    with pytest.raises(ConfigError, match='runs in PyTorch only'):
        openvino_from_checkpoint(synboost_checkpoint, input_size_hw=None, precision='fp32')
    assert make_scorer('synboost', info).sources == {'weights': 'synboost training'}
    # the re-synthesised image, at the input's size, only when asked for
    assert detector.predict(_scene(2)[0]).resynthesis is None
    detector.set_resynthesis(True)
    rendered = detector.predict(_scene(2)[0]).resynthesis
    assert rendered.shape == (32, 64, 3) and rendered.dtype == np.uint8
    from anomseg_ros.runtimes import export_model
    with pytest.raises(ConfigError, match='runs in PyTorch only'):
        export_model(synboost_checkpoint, 'onnx', '/tmp/never.onnx')
    plain = Detector.from_checkpoint(random_checkpoint, device='cpu')
    with pytest.raises(ConfigError, match='does not re-synthesise'):
        plain.set_resynthesis(True)
    _, plain_info = load_model(random_checkpoint)
    with pytest.raises(ConfigError, match='score of a SYNBOOST-trained model'):
        make_scorer('synboost', plain_info)


def test_stages_rerun_alone_resume_and_refuse_another_base(tmp_path, cityscapes_root,
                                                           random_checkpoint, outlier_dir,
                                                           track, capsys):
    out = str(tmp_path / 'run')
    argv = ['train-anomaly', '--method', 'synboost', '--checkpoint', random_checkpoint,
            '--data', cityscapes_root, '--outliers', outlier_dir, '--ensemble-tracks', track,
            '--out', out, *TINY]
    last = os.path.join(out, 'last.pt')
    assert main(argv + ['--stage', 'dissimilarity']) == 2  # nothing to continue
    assert 'run the earlier stages first' in capsys.readouterr().err
    assert main(argv + ['--stage', 'generator']) == 0
    saved = read_checkpoint(last)
    assert saved['phases_done'] == {'generator': 1} and 'ensemble' not in saved
    assert '--stage ensemble' in capsys.readouterr().out
    assert main(argv + ['--stage', 'dissimilarity']) == 0
    assert main(argv + ['--stage', 'ensemble', '--ensemble-step', '0.5']) == 0
    saved = read_checkpoint(last)
    assert saved['ensemble']['step'] == 0.5 and len(saved['history']) == 2
    # --resume with more epochs continues the last phase only
    epochs = argv.index('--epochs') + 1
    assert main(argv[:epochs] + ['2'] + argv[epochs + 1:] + ['--resume']) == 0
    saved = read_checkpoint(last)
    assert [h['phase'] for h in saved['history']] == ['generator', 'dissimilarity',
                                                      'dissimilarity']
    # an ablation of the dissimilarity network on the same generator
    ablation = str(tmp_path / 'ablation')
    argv_ablation = argv[:argv.index('--out')] + ['--out', ablation] + argv[
        argv.index('--out') + 2:]
    gen = argv_ablation.index('--generator-epochs') + 1
    argv_ablation[gen] = '0'
    assert main(argv_ablation + ['--generator-from', last, '--no-uncertainty']) == 0
    model, info = load_model(os.path.join(ablation, 'last.pt'))
    original, _ = load_model(last)
    assert info.method_params['network']['uncertainty'] is False
    assert model.dissimilarity.uncertainty_encoder is None
    assert all(torch.equal(v, original.generator.state_dict()[k])
               for k, v in model.generator.state_dict().items())
    assert read_checkpoint(os.path.join(ablation, 'last.pt'))['phases_done'] == {
        'dissimilarity': 1}
    assert main(argv_ablation) == 2
    assert 'give --generator-from, a SynBoost' in capsys.readouterr().err
    assert main(argv + ['--stage', 'ensemble', '--no-uncertainty']) == 2
    assert 'built with other options' in capsys.readouterr().err
    # another segmentation model under the same OUT is refused
    other = str(tmp_path / 'other.pt')
    base, info = load_model(random_checkpoint)
    with torch.no_grad():
        next(base.parameters()).add_(1.0)
    from anomseg_ros.checkpoint import save_checkpoint
    save_checkpoint(other, base, info)
    capsys.readouterr()
    argv[argv.index(random_checkpoint)] = other
    assert main(argv + ['--stage', 'ensemble']) == 2
    assert 'trained on another segmentation model' in capsys.readouterr().err
    argv_ablation[argv_ablation.index(random_checkpoint)] = other
    assert main(argv_ablation + ['--generator-from', last, '--out', str(tmp_path / 'x')]) == 0
    assert 'trained beside another segmentation model' in capsys.readouterr().out
    _, info = load_model(str(tmp_path / 'x' / 'last.pt'))
    assert info.method_params['generator_from']['path'] == os.path.abspath(last)
    assert main(argv[:-2] + ['--stage', 'bogus']) == 2
    assert 'stages generator, dissimilarity, ensemble' in capsys.readouterr().err


def test_synboost_option_errors(tmp_path, cityscapes_root, random_checkpoint, capsys):
    base = ['train-anomaly', '--method', 'synboost', '--checkpoint', random_checkpoint,
            '--data', cityscapes_root, '--out', str(tmp_path), *TINY]
    assert main(base + ['--ensemble-tracks', 'x']) == 2
    assert 'give --outliers, a folder' in capsys.readouterr().err
    assert main(base + ['--void-share', '0']) == 2
    assert '--ensemble-tracks' in capsys.readouterr().err
    assert main(base + ['--void-share', '0', '--ensemble-tracks', 'x', '--features',
                        'vgg16']) == 2
    assert 'needs --vgg16, the path' in capsys.readouterr().err
    vgg = tmp_path / 'not_vgg.pt'
    torch.save({'a': torch.zeros(1)}, vgg)
    assert main(base + ['--void-share', '0', '--ensemble-tracks', 'x', '--features', 'vgg16',
                        '--vgg16', str(vgg)]) == 2
    assert 'not a torchvision vgg16 state dict' in capsys.readouterr().err


def test_vgg16_features_option_builds_and_scores(random_checkpoint, tmp_path):
    """The VGG path for users who have the weights: a vgg16 state dict from a file (random
    here), the image features and V from it, the model saved and rebuilt from its info."""
    from torchvision.models import vgg16
    from anomseg_ros.checkpoint import save_checkpoint
    path = tmp_path / 'vgg16.pth'
    torch.save(vgg16().state_dict(), path)
    base, info = load_model(random_checkpoint)
    config, options = _run('x', features='vgg16', vgg16=str(path), void_share=0.0)
    model, synboost_info, _ = get_method('synboost').prepare(base, info, config, options)
    with torch.no_grad():
        out = model.eval()(torch.rand(1, 3, 32, 64))
    assert out.shape == (1, 24, 32, 64) and torch.isfinite(out).all()
    assert [c for c, _ in model.image_features.channels()] == [64, 128, 256, 512]
    saved = str(tmp_path / 'synboost_vgg.pt')
    save_checkpoint(saved, model, synboost_info)
    rebuilt, _ = load_model(saved)
    with torch.no_grad():
        assert torch.allclose(rebuilt(torch.ones(1, 3, 32, 64)),
                              model(torch.ones(1, 3, 32, 64)), atol=1e-5)


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_runs_synboost_and_publishes_the_resynthesis(rclpy_context, synboost_checkpoint,
                                                              tmp_path):
    from anomseg_ros.ros.client import DetectorClient, NodeProcess
    from anomseg_ros.data.messages import image_msg_to_array
    from anomseg_ros.ros.outputs import OUTPUTS
    from test_node import _raw
    namespace = '/anomseg_synboost'
    params = {'weights': synboost_checkpoint, 'scorer': 'synboost', 'device': 'cpu',
              'publish.resynthesis': True}
    log = str(tmp_path / 'node.log')
    image = _scene(1)[0]
    with NodeProcess(namespace=namespace, params=params, log_path=log) as process:
        client = DetectorClient(namespace, outputs=OUTPUTS + ('resynthesis',))
        try:
            client.wait_for_node(timeout=90, process=process)
            client.publish(_raw(image, 'rgb8', 7_000_000_000))
            outputs = client.wait_outputs(7_000_000_000, timeout=60)
            assert outputs is not None, open(log).read()
            score = image_msg_to_array(outputs['anomaly_score'])[0]
            rendered = image_msg_to_array(outputs['resynthesis'])[0]
            assert score.shape == image.shape[:2] and np.isfinite(score).all()
            assert 0 <= score.min() and score.max() <= 1
            assert rendered.shape == image.shape and rendered.dtype == np.uint8
        finally:
            client.close()
        assert process.stop() == 0, open(log).read()
