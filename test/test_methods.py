"""PEBAL (paper 004) and SLEEG (paper 003): each loss term against a hand computation, the mask
refinement threshold, training steps that lower the loss and leave frozen weights untouched,
and ``anomseg train-anomaly`` end to end to a checkpoint the detector runs."""
import math
import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anomseg_ros.checkpoint import load_model, read_checkpoint
from anomseg_ros.cli.main import main
from anomseg_ros.errors import ConfigError, DatasetError
from anomseg_ros.methods import pebal, sleeg
from anomseg_ros.methods.outliers import load_outliers, parse_scale, paste_outliers
from anomseg_ros.methods.synboost.method import SynboostOptions
from anomseg_ros.pipeline import Detector, make_scorer
from anomseg_ros.training import AnomalyTrainConfig
from anomseg_ros.training.train_anomaly import train_anomaly

from test_training import _scene, write_tiny_cityscapes


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    return write_tiny_cityscapes(tmp_path_factory.mktemp('cityscapes'))


# --- PEBAL ---------------------------------------------------------------------------------------

def test_pebal_terms_by_hand():
    # two inlier classes and the abstention class; pixel 0 inlier (class 0), pixel 1 outlier
    logits = torch.tensor([[2.0, -1.0], [0.0, 1.0], [1.0, 3.0]]).view(1, 3, 1, 2)
    labels = torch.tensor([[[0, 2]]])
    loss = pebal.PebalLoss(2, m_in=-1.0, m_out=-0.5, beta1=0.1, beta2=0.01)
    terms = loss.terms(logits, labels)
    energy = [-math.log(math.exp(2) + 1), -math.log(math.exp(-1) + math.exp(1))]
    probs = F.softmax(logits[0, :, 0], dim=0).T.tolist()  # per pixel
    pal = [-math.log(probs[0][0] + probs[0][2] / energy[0] ** 2),
           -math.log(probs[1][2] + probs[1][2] / energy[1] ** 2)]
    assert terms['pal'].item() == pytest.approx(sum(pal) / 2, rel=1e-5)
    assert terms['ebm_in'].item() == pytest.approx(max(0, energy[0] + 1) ** 2, rel=1e-5)
    assert terms['ebm_out'].item() == pytest.approx(max(0, -0.5 - energy[1]) ** 2, rel=1e-5)
    reg = 0.1 * abs(energy[1] - energy[0]) + 0.01 * (abs(energy[0]) + abs(energy[1]))
    assert terms['reg'].item() == pytest.approx(reg, rel=1e-5)
    total = terms['pal'] + 0.1 * (terms['ebm_in'] + terms['ebm_out']) + terms['reg']
    assert loss(logits, labels).item() == pytest.approx(total.item(), rel=1e-6)
    # ablations: a fixed penalty, no regulariser
    fixed = pebal.PebalLoss(2, fixed_penalty=4.0, regulariser=False).terms(logits, labels)
    assert fixed['pal'].item() == pytest.approx(
        (-math.log(probs[0][0] + probs[0][2] / 4) - math.log(probs[1][2] * 1.25)) / 2, rel=1e-5)
    assert fixed['reg'].item() == 0
    code = pebal.PebalLoss(2, reg_form='code').terms(logits, labels)
    assert code['reg'].item() == pytest.approx(
        3e-6 * (energy[1] - energy[0]) ** 2 / 2 + 5e-4 * abs(energy[1]), rel=1e-5)


def test_pebal_score_is_the_smoothed_free_energy():
    logits = torch.randn(1, 4, 9, 9)
    energy = -torch.logsumexp(logits[:, :3], dim=1)
    unsmoothed = make_scorer_from(3, kernel_size=1)(logits)
    assert torch.allclose(unsmoothed, energy, atol=1e-6)
    flat = torch.zeros(1, 4, 9, 9)
    assert torch.allclose(make_scorer_from(3)(flat), -torch.logsumexp(flat[:, :3], dim=1))
    smoothed = make_scorer_from(3)(logits)
    assert smoothed.std() < energy.std()  # the Gaussian evens it out


def make_scorer_from(num_inlier, **params):
    from anomseg_ros.scoring import create_scorer
    return create_scorer('pebal', num_inlier_classes=num_inlier, **params)


def test_anomaly_mix_pastes_outliers_with_their_label(outlier_dir):
    outliers = load_outliers(outlier_dir)
    assert len(outliers) == 3 and outliers[0].shape == (4, 12, 16)
    images, labels = torch.zeros(4, 3, 32, 64), torch.zeros(4, 32, 64, dtype=torch.long)
    pasted = paste_outliers(images, labels, outliers, label=19, mean=torch.zeros(3, 1, 1),
                            std=torch.ones(3, 1, 1), generator=torch.Generator().manual_seed(0),
                            probability=1.0)
    assert pasted.any(dim=(1, 2)).all()
    assert torch.equal(labels == 19, pasted)
    assert (images.sum(dim=1)[pasted] > 0).all() and (images.sum(dim=1)[~pasted] == 0).all()


def test_pasted_outliers_have_the_asked_size():
    outlier = torch.ones(4, 10, 20)  # a full 20-wide rectangle: the pasted width is the side
    for scale in ((0.1, 0.1), (0.5, 0.5)):
        images, labels = torch.zeros(1, 3, 64, 200), torch.zeros(1, 64, 200, dtype=torch.long)
        pasted = paste_outliers(images, labels, [outlier], label=1, mean=torch.zeros(3, 1, 1),
                                std=torch.ones(3, 1, 1), probability=1.0, scale=scale,
                                generator=torch.Generator().manual_seed(0))
        assert int(pasted[0].any(dim=0).sum()) == round(scale[0] * 200)
    assert parse_scale('0.15,0.6') == (0.15, 0.6)
    for bad in ('0.6,0.15', '0,0.3', 'big'):
        with pytest.raises(DatasetError, match='paste scale'):
            parse_scale(bad)


def test_outlier_folder_errors_name_the_file(tmp_path):
    cv2.imwrite(str(tmp_path / 'rgb.png'), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match='rgb.png is not an RGBA image'):
        load_outliers(str(tmp_path))
    with pytest.raises(DatasetError, match='does not exist'):
        load_outliers(str(tmp_path / 'missing'))


# --- SLEEG ---------------------------------------------------------------------------------------

def test_sleeg_losses_and_score_by_hand():
    # channel 0 "normal", channel 1 "anomaly"; pixel 0 is (0, 2), pixel 1 is (1, -1)
    h = torch.tensor([[0.0, 1.0], [2.0, -1.0]]).view(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])                              # pixel 0 anomaly, 1 normal
    tae = sleeg.tae_loss(h, target)  # both pixels: -log(e^2 / (e^0 + e^2))
    assert tae.item() == pytest.approx(2 * math.log(1 + math.exp(-2)), rel=1e-5)
    jem = torch.tensor([[[-2.0, -5.0]]])
    # {mean_id h1 - mean_ood h1 + gamma + mean_id JEM - mean_ood JEM}_+ = -1 - 2 + 15 - 5 + 2
    assert sleeg.tore_loss(h, jem, target).item() == pytest.approx(9.0)
    assert sleeg.tore_loss(h, jem, target, dynamic=False).item() == pytest.approx(12.0)
    seg = torch.tensor([[0.5, 1.0], [0.0, 2.0]]).view(1, 2, 1, 2)
    outputs = torch.cat([seg, h], dim=1)
    jem_seg = -torch.logsumexp(seg, dim=1)[0, 0]
    log_pa = F.log_softmax(h, dim=1)[0, 1, 0]
    expected = log_pa + 0.5 * (h[0, 1, 0] + jem_seg)
    assert torch.allclose(sleeg.anomaly_score(outputs, 2), expected, atol=1e-6)
    assert torch.allclose(sleeg.anomaly_score(outputs, 2, estimators=('tae',)), log_pa)
    assert torch.allclose(sleeg.anomaly_score(outputs, 2, estimators=('tore',)),
                          h[0, 1, 0] + jem_seg)


def test_refinement_threshold_splits_a_bimodal_score_map():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0.1, 0.03, 60), rng.normal(0.9, 0.03, 40)
    scores = torch.tensor(np.concatenate([low, high]), dtype=torch.float32)
    eta = sleeg.refinement_threshold(scores)
    assert low.max() < eta <= high.min()
    # on a map: the pasted area holds both modes; the threshold keeps the high one
    score_map = torch.zeros(1, 10, 10)
    score_map[0, :, :5] = torch.tensor(low[:50]).view(10, 5).float()
    score_map[0, :4, 5:] = torch.tensor(high[:20]).view(4, 5).float()
    pasted = torch.zeros(1, 10, 10, dtype=torch.bool)
    pasted[0, :4] = True                                  # 20 low and 20 high pixels
    target = sleeg.refine_target(pasted, score_map)
    assert (target[0, :4, 5:] == 1).all() and (target[0, :4, :5] == 255).all()
    assert (target[0, 4:] == 0).all()
    assert (sleeg.refine_target(pasted, score_map, refine=False)[0, :4] == 1).all()


def test_convex_patches_are_convex_polygons_and_squares_full():
    library = sleeg.PatchLibrary(generator=torch.Generator().manual_seed(0), num_patches=3)
    patch = torch.rand(3, 24, 30)
    mask = library.patch_mask(patch)
    assert mask.shape == (24, 30) and 0 < mask.sum() < mask.size
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    assert len(contours) == 1 and cv2.isContourConvex(cv2.convexHull(contours[0]))
    square = sleeg.PatchLibrary(shape='square')
    assert square.patch_mask(patch).all()
    images = torch.rand(2, 3, 32, 64)
    library.update(images)
    pasted = library.paste(images.clone())
    assert pasted.any(dim=(1, 2)).all()


# --- training: the loss falls, frozen weights stay bit-identical ---------------------------------

def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_pebal_steps_lower_the_loss_and_train_only_the_last_block(random_checkpoint, outlier_dir):
    torch.manual_seed(0)
    from anomseg_ros.training.train import load_init_weights
    base, info = load_init_weights(random_checkpoint, backbone=None, num_classes=19)
    model = pebal.add_abstention_output(base, 'erfnet')
    assert model.decoder.output_conv.out_channels == 20
    assert torch.equal(model.decoder.output_conv.weight[:, :19], base.decoder.output_conv.weight)
    pebal.freeze_all_but_last_block(model, 'erfnet')
    before = _snapshot(model)
    images = torch.stack([torch.from_numpy(_scene(i)[0]).permute(2, 0, 1).float() / 255
                          for i in range(2)])
    labels = torch.stack([torch.from_numpy(_scene(i)[1]).long() for i in range(2)])
    paste_outliers(images, labels, load_outliers(outlier_dir), label=19,
                   mean=torch.zeros(3, 1, 1), std=torch.ones(3, 1, 1),
                   generator=torch.Generator().manual_seed(1), probability=1.0)
    criterion = pebal.PebalLoss(19)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    from anomseg_ros.training.engine import freeze_batch_norm_of_frozen_layers
    losses = []
    for _ in range(8):
        model.train()
        freeze_batch_norm_of_frozen_layers(model)
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    after = model.state_dict()
    for key, value in before.items():
        if key.startswith('encoder.'):
            assert torch.equal(after[key], value), key       # frozen: weights and statistics
    assert not torch.equal(after['decoder.output_conv.weight'],
                           before['decoder.output_conv.weight'])


def test_sleeg_steps_lower_the_loss_and_train_only_the_head(random_checkpoint):
    torch.manual_seed(0)
    base, _ = load_model(random_checkpoint)
    for p in base.parameters():
        p.requires_grad_(False)
    model = sleeg.SleegModel(base)
    before = _snapshot(model.segmenter)
    head_before = _snapshot(model.head)
    images = torch.stack([torch.from_numpy(_scene(i)[0]).permute(2, 0, 1).float() / 255
                          for i in range(2)])
    library = sleeg.PatchLibrary(generator=torch.Generator().manual_seed(0), num_patches=3)
    library.update(images)
    pasted = library.paste(images)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        model.train()
        terms = sleeg.sleeg_losses(model(images), pasted, 19, refine=False)
        loss = terms['tae'] + terms['tore']
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses
    for key, value in model.segmenter.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())


# --- the command line ----------------------------------------------------------------------------

TINY = ['--epochs', '1', '--iters-per-epoch', '2', '--batch-size', '2', '--workers', '0',
        '--device', 'cpu', '--input-size', '64x32']


@pytest.mark.parametrize('method,extra', [('pebal', ['--no-regulariser', '--margins', 'auto']),
                                          ('sleeg', ['--estimators', 'tae',
                                                     '--patch-shape', 'square'])])
def test_train_anomaly_writes_a_checkpoint_the_detector_runs(tmp_path, cityscapes_root,
                                                             random_checkpoint, outlier_dir,
                                                             method, extra, capsys):
    out = str(tmp_path / method)
    argv = ['train-anomaly', '--method', method, '--checkpoint', random_checkpoint, '--data',
            cityscapes_root, '--out', out, *TINY, *extra]
    if method == 'pebal':  # its images decoded once into a cache, as anomseg train --cache
        argv += ['--outliers', outlier_dir, '--cache', str(tmp_path / 'cache')]
    assert main(argv) == 0
    if method == 'pebal':
        assert any(name.endswith('.npy') for _, _, files in os.walk(tmp_path / 'cache')
                   for name in files)
    path = os.path.join(out, 'last.pt')
    _, info = load_model(path)
    assert info.method == method and info.num_inlier_classes == 19
    assert info.num_classes == (20 if method == 'pebal' else 22)
    detector = Detector.from_checkpoint(path, scorer=method, device='cpu')
    result = detector.predict(_scene(2)[0])
    assert np.isfinite(result.score_map).all() and result.score_map.shape == (32, 64)
    assert result.labels.max() < 19 or (result.labels == 255).any()  # never a method output
    if method == 'sleeg':
        assert make_scorer('sleeg', info).estimators == ('tae',)  # the ablation it trained
    else:  # --margins auto: placed on this model's energies, the paper's gap kept
        margins = info.method_params['m_in'], info.method_params['m_out']
        assert margins[1] - margins[0] == pytest.approx(6.0) and margins[0] != pebal.M_IN
        assert 'margins from the model' in capsys.readouterr().out
    # the classic scorers run on the same checkpoint's inlier outputs
    assert Detector.from_checkpoint(path, scorer='maxlogit', device='cpu').predict(
        _scene(2)[0]).score_map.shape == (32, 64)
    assert read_checkpoint(path)['epoch'] == 1
    # resume continues to epoch 2
    assert main(argv[:argv.index('--epochs') + 1] + ['2'] + argv[argv.index('--epochs') + 2:]
                + ['--resume']) == 0
    assert read_checkpoint(path)['epoch'] == 2
    if method == 'pebal':  # the resumed run keeps the margins it chose, not a new batch's
        _, resumed = load_model(path)
        assert (resumed.method_params['m_in'], resumed.method_params['m_out']) == margins
        assert 'margins from the model' not in capsys.readouterr().out


def test_sleeg_refuses_a_backbone_without_decoder_features():
    from anomseg_ros.backbones import create_backbone
    with pytest.raises(ConfigError, match='does not split into forward_features'):
        sleeg.SleegModel(create_backbone('resnet50', num_classes=19))


def test_train_anomaly_errors(tmp_path, cityscapes_root, random_checkpoint, capsys):
    assert main(['train-anomaly', '--method', 'pebal', '--checkpoint', random_checkpoint,
                 '--data', cityscapes_root, '--out', str(tmp_path), *TINY]) == 2
    assert 'give --outliers, a folder' in capsys.readouterr().err
    # the core names the field; only the command line says it as a flag
    with pytest.raises(ConfigError, match='give `outliers`, a folder'):
        train_anomaly(AnomalyTrainConfig(method='pebal', checkpoint=random_checkpoint,
                                         data=cityscapes_root, out=str(tmp_path)))
    # another method's option would be ignored: refused, naming its method
    assert main(['train-anomaly', '--method', 'pebal', '--checkpoint', random_checkpoint,
                 '--data', cityscapes_root, '--out', str(tmp_path), '--void-share', '0.2',
                 *TINY]) == 2
    assert '--void-share is an option of synboost, not of pebal' in capsys.readouterr().err
    with pytest.raises(ConfigError, match='takes PebalOptions, got SynboostOptions'):
        train_anomaly(AnomalyTrainConfig(method='pebal', checkpoint=random_checkpoint,
                                         data=cityscapes_root, out=str(tmp_path)),
                      SynboostOptions())
    _, info = load_model(random_checkpoint)
    for method in ('sleeg', 'pebal'):  # refused up front, as the node refuses the parameter
        with pytest.raises(ConfigError, match=f"score of a {method.upper()}-trained model .*"
                           f"plain segmentation model.*--method {method}"):
            make_scorer(method, info)
    assert pebal.parse_margins('paper') == (pebal.M_IN, pebal.M_OUT)
    assert pebal.parse_margins('-8,-2') == (-8.0, -2.0) and pebal.parse_margins('auto') is None
    for bad, why in (('-2,-8', 'must lie below'), ('low', 'two numbers')):
        with pytest.raises(ConfigError, match=why):
            pebal.parse_margins(bad)
    assert pebal.margins_from_energies(torch.tensor([-9.0, -7.0, -5.0])) == (-7.0, -1.0)
    with pytest.raises(ConfigError, match='tae, tore or tae\\+tore'):
        sleeg.parse_estimators('tea')
    with pytest.raises(ConfigError, match="needs a SLEEG checkpoint"):
        make_scorer_sleeg = __import__('anomseg_ros.scoring', fromlist=['create_scorer'])
        make_scorer_sleeg.create_scorer('sleeg', num_inlier_classes=19)(torch.zeros(1, 19, 4, 4))


def test_options_round_trip_as_checkpoints_keep_them_and_refuse_unknown_names():
    from anomseg_ros.options import from_plain, to_plain
    options = SynboostOptions(void_share=0.2, uncertainty=False)
    assert from_plain(SynboostOptions, to_plain(options)) == options
    config = AnomalyTrainConfig(method='pebal', checkpoint='c.pt', data='d', out='o',
                                crop_size=(32, 64))  # (H, W)
    assert to_plain(config)['crop_size'] == [32, 64]  # plain values, as torch.load reads them
    assert from_plain(AnomalyTrainConfig, to_plain(config)) == config
    text = {**to_plain(config), 'crop_size': '64x32', 'paste_scale': '0.1,0.4'}
    parsed = from_plain(AnomalyTrainConfig, text)  # strings go through the field's parse
    assert parsed.crop_size == (32, 64) and parsed.paste_scale == (0.1, 0.4)
    with pytest.raises(ConfigError, match='unknown options void_shar; known: .*void_share'):
        from_plain(SynboostOptions, {'void_shar': 0.1})
    with pytest.raises(ConfigError, match='`mix_probability` is a share of images'):
        pebal.PebalOptions(mix_probability=1.5).check()
