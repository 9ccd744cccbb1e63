"""Training on Cityscapes: dataset layout and label mapping, transforms, class weights, the
engine, and ``anomseg train`` end to end on a tiny dataset written by the test."""
import importlib
import math
import os
import signal
import subprocess
import sys

from cityscapesscripts.helpers.labels import labels as cityscapes_labels, name2label
import numpy as np
import pytest
import torch

from anomseg_ros.backbones import create_backbone
from anomseg_ros.checkpoint import load_model, read_checkpoint
from anomseg_ros.cli.main import main
from anomseg_ros.data.cityscapes import CityscapesDataset, label_ids_to_train_ids
from anomseg_ros.data.images import write_gray, write_rgb
from anomseg_ros.errors import DatasetError
from anomseg_ros.labels import CITYSCAPES_CLASSES
from anomseg_ros.pipeline import Detector
from anomseg_ros.training.engine import (evaluate, make_optimizer, make_poly_scheduler,
                                         train_one_epoch)
from anomseg_ros.training.losses import enet_class_weights, label_histogram, make_criterion
from anomseg_ros.cli.train import get_args_parser
from anomseg_ros.training.train import load_init_weights, resolve_amp
from anomseg_ros.training.transforms import EvalTransform, TrainTransform

# class name -> RGB colour drawn in the images of the tiny dataset
COLOURS = {'road': (128, 64, 128), 'building': (70, 70, 70), 'sky': (70, 130, 180),
           'car': (0, 0, 142)}


def _scene(index: int):
    """A 64x32 scene: sky, building, road, a car at a varying place, a void strip."""
    train_ids = np.full((32, 64), name2label['sky'].trainId, np.uint8)
    train_ids[10:20] = name2label['building'].trainId
    train_ids[20:] = name2label['road'].trainId
    left = 6 + 10 * index
    train_ids[16:26, left:left + 14] = name2label['car'].trainId
    train_ids[:, 60:] = 255
    image = np.zeros((32, 64, 3), np.uint8)
    for name, colour in COLOURS.items():
        image[train_ids == name2label[name].trainId] = colour
    noise = np.random.default_rng(index).integers(-8, 9, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), train_ids


def _train_ids_to_label_ids(train_ids):
    label_ids = np.zeros_like(train_ids)  # 0: "unlabeled", trainId 255
    for name in COLOURS:
        label_ids[train_ids == name2label[name].trainId] = name2label[name].id
    return label_ids


def write_tiny_cityscapes(root, *, label_ids_only=('train', 'aachen', 1)):
    """4 train images in 2 cities and 2 val images; one train label only as labelIds."""
    layout = {'train': [('aachen', 0), ('aachen', 1), ('bremen', 2), ('bremen', 3)],
              'val': [('lindau', 0), ('lindau', 3)]}
    for split, items in layout.items():
        for city, index in items:
            name = f'{city}_{index:06d}_000019'
            image, train_ids = _scene(index)
            write_rgb(os.path.join(root, 'leftImg8bit', split, city,
                                   f'{name}_leftImg8bit.png'), image)
            gt = os.path.join(root, 'gtFine', split, city, name)
            if (split, city, index) == label_ids_only:
                write_gray(f'{gt}_gtFine_labelIds.png', _train_ids_to_label_ids(train_ids))
            else:
                write_gray(f'{gt}_gtFine_labelTrainIds.png', train_ids)
    return str(root)


@pytest.fixture(scope='module')
def cityscapes_root(tmp_path_factory):
    return write_tiny_cityscapes(tmp_path_factory.mktemp('cityscapes'))


TRAIN_ARGS = ['--epochs', '1', '--batch-size', '2', '--input-size', '64x32', '--workers', '0',
              '--device', 'cpu', '--seed', '3']


@pytest.fixture(scope='module')
def trained(cityscapes_root, tmp_path_factory):
    """One tiny epoch of ``anomseg train``: (output folder, exit code)."""
    out = str(tmp_path_factory.mktemp('run') / 'erfnet')
    code = main(['train', '--data', cityscapes_root, '--out', out, *TRAIN_ARGS])
    return out, code


# --- dataset -----------------------------------------------------------------------------------

def test_label_ids_map_to_train_ids_as_cityscapesscripts():
    ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    mapped = label_ids_to_train_ids(ids)
    expected = np.full(256, 255, np.uint8)
    for label in cityscapes_labels:
        if label.id >= 0 and label.trainId not in (255, -1):
            expected[label.id] = label.trainId
    np.testing.assert_array_equal(mapped.ravel(), expected)
    assert mapped.dtype == np.uint8
    assert (mapped[ids == 7], mapped[ids == 26], mapped[ids == 0]) == (0, 13, 255)  # road car


def test_dataset_reads_train_ids_and_maps_label_ids(cityscapes_root):
    train = CityscapesDataset(cityscapes_root, 'train')
    assert len(train) == 4 and len(CityscapesDataset(cityscapes_root, 'val')) == 2
    assert [s.label_is_train_ids for s in train.samples] == [True, False, True, True]
    for index in range(4):
        image, label = train[index]
        assert image.shape == (32, 64, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(label, _scene(index)[1])  # index 1 came as labelIds


def test_dataset_applies_the_transform(cityscapes_root):
    dataset = CityscapesDataset(cityscapes_root, 'val', transform=lambda i, lab: (lab, i))
    label, image = dataset[0]
    assert label.shape == (32, 64) and image.shape == (32, 64, 3)


def test_cache_gives_the_same_items_and_survives_a_torn_file(cityscapes_root, tmp_path):
    plain = CityscapesDataset(cityscapes_root, 'train')
    cached = CityscapesDataset(cityscapes_root, 'train', cache_dir=str(tmp_path / 'cache'))
    for index in range(len(plain)):
        for first, second in zip(plain[index], cached[index]):
            assert np.array_equal(first, second)
    files = sorted((tmp_path / 'cache' / 'train').iterdir())
    assert len(files) == 2 * len(plain) and all(f.suffix == '.npy' for f in files)
    image, _ = cached[0]
    assert isinstance(image, np.memmap)  # the second read comes from the cache
    files[0].write_bytes(files[0].read_bytes()[:20])  # torn: re-decoded and rewritten
    for first, second in zip(plain[0], cached[0]):
        assert np.array_equal(first, second)


def test_missing_folders_name_the_expected_layout(tmp_path):
    with pytest.raises(DatasetError, match='leftImg8bit/SPLIT/CITY') as error:
        CityscapesDataset(str(tmp_path), 'train')
    assert 'gtFine' in str(error.value)


def test_image_without_label_is_named(tmp_path):
    root = write_tiny_cityscapes(tmp_path)
    os.remove(os.path.join(root, 'gtFine', 'val', 'lindau',
                           'lindau_000003_000019_gtFine_labelTrainIds.png'))
    with pytest.raises(DatasetError, match='lindau_000003_000019_leftImg8bit.png'):
        CityscapesDataset(root, 'val')


# --- transforms --------------------------------------------------------------------------------

def _marked_pair():
    """An 80x40 image, black but for a red block on the left where the label is 7."""
    image = np.zeros((40, 80, 3), np.uint8)
    label = np.ones((40, 80), np.uint8)
    image[8:30, 5:35] = (255, 0, 0)
    label[8:30, 5:35] = 7
    return image, label


def test_train_transform_keeps_image_and_label_aligned():
    transform = TrainTransform((32, 48), brightness=0, contrast=0, saturation=0,
                               scale_range=(0.5, 2.0))
    padded = 0
    for seed in range(30):
        torch.manual_seed(seed)
        image, label = transform(*_marked_pair())
        assert image.shape == (3, 32, 48) and image.dtype == torch.float32
        assert label.shape == (32, 48) and label.dtype == torch.int64
        red = image[0] > 0.5
        marked = label == 7
        # allow the one-pixel band that resampling blurs along the block's edges
        assert (red != marked).float().mean() < 0.08, seed
        if marked.any():
            assert red[marked].float().mean() > 0.9, seed
        padded += int((label == 255).any())
        assert (image[:, label == 255] == 0).all()
    assert padded > 0  # scales below 1 were drawn and padded with 255 / black


def test_train_transform_flips_image_and_label_together():
    transform = TrainTransform((40, 80), scale_range=(1.0, 1.0), flip_prob=1.0, brightness=0,
                               contrast=0, saturation=0)
    image, label = transform(*_marked_pair())
    expected_image, expected_label = _marked_pair()
    np.testing.assert_array_equal(label.numpy(), expected_label[:, ::-1])
    np.testing.assert_array_equal((image[0] > 0.5).numpy(), expected_image[:, ::-1, 0] > 127)


def test_train_transform_is_repeatable_and_jitter_leaves_the_label():
    transform = TrainTransform((32, 48))
    torch.manual_seed(5)
    first = transform(*_marked_pair())
    torch.manual_seed(5)
    second = transform(*_marked_pair())
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert 0 <= first[0].min() and first[0].max() <= 1
    assert set(first[1].unique().tolist()) <= {1, 7, 255}


def test_train_transform_normalises_with_mean_and_std():
    transform = TrainTransform((40, 80), mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0),
                               scale_range=(1.0, 1.0), flip_prob=0, brightness=0, contrast=0,
                               saturation=0)
    image, _ = transform(np.full((40, 80, 3), 255, np.uint8), np.zeros((40, 80), np.uint8))
    assert image[:, 0, 0].tolist() == pytest.approx([2.0, 1.0, 0.5])


def test_eval_transform_resizes_to_the_network_size():
    image, label = _marked_pair()
    tensor, target = EvalTransform((20, 40))(image, label)
    assert tensor.shape == (3, 20, 40) and target.shape == (20, 40)
    np.testing.assert_array_equal(target.numpy(), label[1::2, 1::2])
    assert ((tensor[0] > 0.5) == (target == 7)).float().mean() > 0.95


# --- loss and class weights --------------------------------------------------------------------

def test_label_histogram_counts_ignored_and_out_of_range_pixels_together():
    labels = [np.array([[0, 0, 1], [255, 2, 1]], np.uint8), np.array([[1, 30]], np.uint8)]
    np.testing.assert_array_equal(label_histogram(labels, 3), [2, 3, 1, 2])


def test_enet_class_weights_by_hand():
    # 50 road, 30 car, 20 ignored pixels: p = 0.5, 0.3 of all pixels
    weights = enet_class_weights([50, 30, 20], 2)
    assert weights.dtype == torch.float32
    assert weights.tolist() == pytest.approx([1 / math.log(1.6), 1 / math.log(1.4)], rel=1e-6)
    # an absent class gets ERFNet's ceiling 1 / ln(1.10) = 10.49; ENet's c = 1.02 is an option
    assert enet_class_weights([1, 0], 2)[1] == pytest.approx(10.4921, abs=1e-4)
    assert enet_class_weights([1, 0], 2, c=1.02)[1] == pytest.approx(1 / math.log(1.02))


def test_criterion_ignores_255_and_uses_the_weights():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 0, 0, 0] = 2.0
    labels = torch.tensor([[[0, 1, 255]]])
    plain = make_criterion()(logits, labels)
    expected = (-torch.log_softmax(logits[0, :, 0, 0], 0)[0] + math.log(2)) / 2
    assert plain.item() == pytest.approx(expected.item())
    weighted = make_criterion(class_weights=torch.tensor([1.0, 0.0]))(logits, labels)
    assert weighted.item() == pytest.approx(-torch.log_softmax(logits[0, :, 0, 0], 0)[0].item())


# --- engine ------------------------------------------------------------------------------------

def test_a_few_steps_on_one_batch_reduce_the_loss(cityscapes_root):
    torch.manual_seed(0)
    dataset = CityscapesDataset(cityscapes_root, 'train', transform=EvalTransform((32, 64)))
    images, labels = (torch.stack(t) for t in zip(dataset[0], dataset[2]))
    model = create_backbone('erfnet', num_classes=19)
    criterion = make_criterion()
    with torch.no_grad():
        before = criterion(model.train()(images), labels).item()
    optimizer = make_optimizer(model, lr=2e-3)
    scheduler = make_poly_scheduler(optimizer, 100)
    stats = train_one_epoch(model, [(images, labels)] * 12, optimizer, scheduler, criterion,
                            torch.device('cpu'), progress=False)
    with torch.no_grad():
        after = criterion(model(images), labels).item()
    assert stats["iters"] == 12 and scheduler.last_epoch == 12
    assert optimizer.param_groups[0]['lr'] == pytest.approx(2e-3 * (1 - 12 / 100) ** 0.9)
    assert after < 0.8 * before, (before, after)


def test_bf16_autocast_steps_follow_the_fp32_loss_curve(cityscapes_root):
    """The fast CPU path trains: bf16 autocast + channels-last lowers the loss as float32 does
    (bf16 rounding moves each step a little, not the curve)."""
    dataset = CityscapesDataset(cityscapes_root, 'train', transform=EvalTransform((32, 64)))
    images, labels = (torch.stack(t) for t in zip(dataset[0], dataset[2]))
    curves = {}
    for dtype in (torch.float32, torch.bfloat16):
        torch.manual_seed(0)
        model = create_backbone('erfnet', num_classes=19).to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, lr=2e-3)
        scheduler = make_poly_scheduler(optimizer, 100)
        criterion, curve = make_criterion(), []
        for _ in range(4):
            stats = train_one_epoch(model, [(images, labels)] * 3, optimizer, scheduler,
                                    criterion, torch.device('cpu'), amp_dtype=dtype,
                                    progress=False)
            curve.append(stats['loss'])
        curves[dtype] = curve
    fp32, bf16 = curves[torch.float32], curves[torch.bfloat16]
    assert bf16[-1] < 0.8 * bf16[0], bf16
    assert all(abs(a - b) < 0.1 * a for a, b in zip(fp32, bf16)), (fp32, bf16)


def test_class_uniform_crops_centre_rare_classes():
    """A 4x4 pole in a 256x256 road image: random 32x32 crops rarely see it, class-uniform
    crops (probability 1) centre it in half of them (two classes present)."""
    image = np.zeros((256, 256, 3), np.uint8)
    label = np.zeros((256, 256), np.uint8)
    label[100:104, 200:204] = 5
    seen = {}
    for probability in (0.0, 1.0):
        torch.manual_seed(0)
        transform = TrainTransform((32, 32), base_size_hw=(256, 256), scale_range=(1.0, 1.0),
                                   flip_prob=0.0, class_uniform=probability)
        crops = [transform(image, label)[1] for _ in range(200)]
        seen[probability] = sum(bool((crop == 5).any()) for crop in crops)
    assert seen[0.0] < 20
    assert 70 < seen[1.0] < 130, seen


def test_repeat_factors_by_hand_and_rare_images_are_drawn_more_often():
    """LVIS's r = max(1, sqrt(t / f)): a class in 1 of 40 images (f = 0.025) at t = 0.1 gets
    r = 2; classes in every image r = 1; an image takes its rarest class's factor."""
    from torch.utils.data import WeightedRandomSampler
    from anomseg_ros.training.train import repeat_factors
    histograms = np.zeros((40, 20), np.int64)
    histograms[:, 0] = 100          # road everywhere
    histograms[0, 16] = 5           # a tram in image 0 only
    histograms[1:21, 5] = 3         # poles in half of the images
    factors = repeat_factors(histograms, 0.1)
    assert factors[0] == pytest.approx(2.0)
    assert (factors[1:] == 1.0).all()
    assert (repeat_factors(histograms, 0.0) == 1.0).all()
    draws = list(WeightedRandomSampler(factors.tolist(), 41 * 200, replacement=True,
                                       generator=torch.Generator().manual_seed(0)))
    share = draws.count(0) / len(draws)
    assert share == pytest.approx(2 / 41, rel=0.15), share


def test_train_with_repeat_factor_sampling_runs_and_says_so(cityscapes_root, tmp_path, capsys):
    out = str(tmp_path / 'rfs')
    assert main(['train', '--data', cityscapes_root, '--out', out, *TRAIN_ARGS,
                 '--repeat-threshold', '0.5']) == 0
    assert 'repeat-factor sampling (threshold 0.5)' in capsys.readouterr().out
    assert read_checkpoint(os.path.join(out, 'last.pt'))['args']['repeat_threshold'] == 0.5
    assert main(['train', '--data', cityscapes_root, '--out', str(tmp_path / 'bad'),
                 *TRAIN_ARGS, '--repeat-threshold', '2']) != 0
    assert '--repeat-threshold is a fraction' in capsys.readouterr().err
    # the library names the field it was given; only the command line says it as a flag
    from anomseg_ros.errors import ConfigError
    from anomseg_ros.training import TrainConfig, train
    with pytest.raises(ConfigError, match='`repeat_threshold` is a fraction'):
        train(TrainConfig(data=cityscapes_root, out=str(tmp_path / 'bad'), repeat_threshold=2))
    lines = []
    assert train(TrainConfig(data=cityscapes_root, out=out, resume=os.path.join(out, 'last.pt'),
                             epochs=1), say=lines.append) == 0
    assert any('raise `epochs` to train more' in line for line in lines)  # progress: to say


def test_init_weights_keep_the_first_19_outputs_of_a_void_model(random_checkpoint):
    source, _ = load_model(random_checkpoint)
    model, info = load_init_weights(random_checkpoint, backbone='erfnet')
    assert info.num_classes == 20 and model.decoder.output_conv.out_channels == 19
    assert torch.equal(model.decoder.output_conv.weight, source.decoder.output_conv.weight[:, :19])
    assert torch.equal(model.encoder.layers[3].conv3x1_1.weight,
                       source.encoder.layers[3].conv3x1_1.weight)


# --- anomseg train -----------------------------------------------------------------------------

def test_train_help_names_torchrun_for_multi_gpu(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(['train', '--help'])
    assert exit_.value.code == 0
    verb_help = capsys.readouterr().out
    assert 'usage: anomseg train' in verb_help
    module_help = get_args_parser().format_help()
    for text in (verb_help, module_help):
        assert 'torchrun --nproc_per_node=N -m anomseg_ros.cli.train' in text
        assert '--time-budget-min' in text and '--resume' in text


def test_train_writes_checkpoints_the_detector_loads(trained, capsys):
    out, code = trained
    assert code == 0
    for name in ('best.pt', 'last.pt'):
        detector = Detector.from_checkpoint(os.path.join(out, name), device='cpu')
        assert detector.info.num_classes == 19 and detector.info.void_channel is None
        assert detector.info.class_names == CITYSCAPES_CLASSES
        assert detector.input_size_hw == (32, 64)
        result = detector.predict(_scene(0)[0])
        assert result.labels.shape == (32, 64) and result.labels.max() < 19
    checkpoint = read_checkpoint(os.path.join(out, 'last.pt'))
    assert checkpoint['epoch'] == 1 and len(checkpoint['history']) == 1
    entry = checkpoint['history'][0]
    assert set(entry) >= {'loss', 'miou', 'per_class_iou', 'seconds'}
    assert checkpoint['best_miou'] == entry['miou']
    assert checkpoint['args']['input_size'] == '64x32'
    assert all(isinstance(v, (str, int, float)) for v in checkpoint['args'].values())
    assert len(checkpoint['class_weights']) == 19


def test_resume_continues_from_epoch_1_to_2_with_the_history(trained, cityscapes_root, tmp_path,
                                                             capsys):
    out, _ = trained
    capsys.readouterr()
    code = main(['train', '--data', cityscapes_root, '--out',
                 str(tmp_path), *TRAIN_ARGS[:1], '2', *TRAIN_ARGS[2:],
                 '--resume', os.path.join(out, 'last.pt')])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'after epoch 1' in printed and 'epoch 2/2' in printed and 'epoch 1/2' not in printed
    first = read_checkpoint(os.path.join(out, 'last.pt'))
    resumed = read_checkpoint(os.path.join(tmp_path, 'last.pt'))
    assert resumed['epoch'] == 2 and [h['epoch'] for h in resumed['history']] == [1, 2]
    np.testing.assert_equal(resumed['history'][0], first['history'][0])  # NaN == NaN
    assert resumed['scheduler']['last_epoch'] == 2 * first['scheduler']['last_epoch']
    assert 'best epoch' in printed and 'traffic light' in printed


def test_an_existing_run_is_not_overwritten(trained, cityscapes_root, capsys):
    out, _ = trained
    code = main(['train', '--data', cityscapes_root, '--out', out, *TRAIN_ARGS])
    assert code == 2 and '--resume' in capsys.readouterr().err


def test_interrupt_leaves_the_last_completed_epoch(cityscapes_root, tmp_path, monkeypatch,
                                                   capsys):
    train_module = importlib.import_module('anomseg_ros.training.train')  # not train()
    calls = []

    def evaluate_then_interrupt(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    real_evaluate = train_module.evaluate
    monkeypatch.setattr(train_module, 'evaluate', evaluate_then_interrupt)
    code = main(['train', '--data', cityscapes_root, '--out', str(tmp_path), *TRAIN_ARGS[:1],
                 '3', *TRAIN_ARGS[2:], '--no-class-weights', '--max-iters-per-epoch', '1'])
    assert code == 130
    assert read_checkpoint(str(tmp_path / 'last.pt'))['epoch'] == 1
    assert 'holds epoch 1' in capsys.readouterr().out


def test_time_budget_stops_after_the_epoch(cityscapes_root, tmp_path, capsys):
    code = main(['train', '--data', cityscapes_root, '--out', str(tmp_path), *TRAIN_ARGS[:1],
                 '3', *TRAIN_ARGS[2:], '--no-class-weights', '--max-iters-per-epoch', '1',
                 '--val-limit', '1', '--time-budget-min', '1e-6'])
    assert code == 0
    checkpoint = read_checkpoint(str(tmp_path / 'last.pt'))
    assert checkpoint['epoch'] == 1 and checkpoint['class_weights'] is None
    assert 'time budget' in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_two_processes_on_the_cpu(cityscapes_root, tmp_path):
    """DistributedDataParallel over gloo: the sharded validation equals a one-process one."""
    torchrun = os.path.join(os.path.dirname(sys.executable), 'torchrun')
    command = [torchrun, '--standalone', '--nproc_per_node=2', '-m', 'anomseg_ros.cli.train',
               '--data', cityscapes_root, '--out', str(tmp_path), *TRAIN_ARGS,
               '--batch-size', '1', '--no-class-weights']
    # its own process group, so that a hang is ended with the workers torchrun started
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'},
                          start_new_session=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]
    assert stdout.count('epoch 1/1:') == 1  # only rank 0 prints
    checkpoint = read_checkpoint(str(tmp_path / 'last.pt'))
    model, _ = load_model(str(tmp_path / 'last.pt'))
    val = CityscapesDataset(cityscapes_root, 'val', transform=EvalTransform((32, 64)))
    metrics = evaluate(model, torch.utils.data.DataLoader(val, batch_size=2), torch.device('cpu'),
                       19, CITYSCAPES_CLASSES,
                       amp_dtype=resolve_amp('auto', torch.device('cpu')))  # as training did
    assert checkpoint['history'][0]['miou'] == pytest.approx(metrics['miou'])
    assert metrics['num_images'] == 2


def test_smaller_crops_keep_the_object_scale_of_the_input_size():
    """A 16x8 crop of an image scaled for a 32x16 input is a window of the 32x16 image, not
    the whole image shrunk to 16x8."""
    from anomseg_ros.training.transforms import TrainTransform
    image = np.zeros((64, 128, 3), np.uint8)
    label = np.zeros((64, 128), np.uint8)
    label[:, 64:] = 1  # the right half
    torch.manual_seed(0)
    transform = TrainTransform((8, 16), base_size_hw=(16, 32), scale_range=(1.0, 1.0),
                               flip_prob=0.0, brightness=0, contrast=0, saturation=0)
    counts = set()
    for _ in range(30):
        _, crop = transform(image, label)
        assert tuple(crop.shape) == (8, 16)
        counts.add(int(crop[0].sum()))  # = the crop's left edge in the 32-wide image
    assert len(counts) > 3 and counts <= set(range(17))
    shrunk = TrainTransform((8, 16), scale_range=(1.0, 1.0), flip_prob=0.0, brightness=0,
                            contrast=0, saturation=0)
    assert int(shrunk(image, label)[1][0].sum()) == 8  # without a base size: the whole image
