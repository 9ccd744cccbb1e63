"""Anomaly benchmark loaders: every released layout on tiny data written here, and the real
Validation_Dataset subsets of ../shared/data."""
import os

import numpy as np
import pytest

from anomseg_ros.data.anomaly import (AnomalyDataset, CONVENTIONS, LAYOUTS, map_label,
                                      open_anomaly_dataset)
from anomseg_ros.data.images import read_label, write_gray, write_rgb
from anomseg_ros.errors import DatasetError, ImageFormatError

HW = (12, 16)
SMIYC_VALUES = {0: 0, 1: 1, 255: 255}
ROAD_ANOMALY_VALUES = {0: 0, 1: 0, 2: 1}
LAF_VALUES = {0: 255, 1: 0, 2: 1, 57: 1, 200: 1, 201: 255, 255: 255}


def _raw(values, seed):
    """A label of size HW holding every one of ``values``, in an order set by ``seed``."""
    rng = np.random.default_rng(seed)
    tiled = np.resize(np.array(sorted(values), np.uint8), HW[0] * HW[1])
    return rng.permutation(tiled).reshape(HW)


def _expected(raw, table):
    return np.vectorize(table.__getitem__, otypes=[np.uint8])(raw)


def _image(path, seed=0):
    write_rgb(str(path), np.random.default_rng(seed).integers(0, 256, (*HW, 3), np.uint8))


def _write_pairs(pairs, table):
    """Write ``(image path, label path)`` pairs; return the raw labels written, in order."""
    raws = []
    for seed, (image, label) in enumerate(pairs):
        _image(image, seed)
        raws.append(_raw(table, seed))
        write_gray(str(label), raws[-1])
    return raws


def _check(dataset, names, raws, table):
    items = list(dataset)
    assert [name for name, _, _ in items] == names == [s.name for s in dataset.samples]
    assert len(dataset) == len(names)
    for (_, rgb, label), raw in zip(items, raws):
        assert rgb.shape == (*HW, 3) and rgb.dtype == np.uint8
        assert label.dtype == np.uint8
        np.testing.assert_array_equal(label, _expected(raw, table))


# --- each layout -------------------------------------------------------------------------------

def _smiyc(root):
    for sub in ('images', 'labels_masks'):
        (root / sub).mkdir(parents=True)
    raws = _write_pairs([(root / 'images' / 'validation0001.webp',
                          root / 'labels_masks' / 'validation0001_labels_semantic.png'),
                         (root / 'images' / 'validation0000.jpg',
                          root / 'labels_masks' / 'validation0000_labels_semantic.png')],
                        SMIYC_VALUES)
    _image(root / 'images' / 'airplane0000.jpg')  # a test frame: its label is not released
    write_gray(str(root / 'labels_masks' / 'validation0000_labels_semantic_color.png'),
               np.zeros(HW, np.uint8))
    return ['validation0000', 'validation0001'], raws[::-1]


def test_smiyc_release(tmp_path):
    names, raws = _smiyc(tmp_path / 'dataset_AnomalyTrack')
    dataset = AnomalyDataset(str(tmp_path / 'dataset_AnomalyTrack'))
    assert dataset.layout.name == 'smiyc' and dataset.convention == 'smiyc'
    assert dataset.describe_convention() == (
        "smiyc: 0 inlier, 1 anomaly, 255 void, kept as they are (other values are refused) "
        "(of the smiyc layout, folder 'dataset_AnomalyTrack')")
    _check(dataset, names, raws, SMIYC_VALUES)


def test_smiyc_validation_image_without_label_is_an_error(tmp_path):
    _smiyc(tmp_path)
    os.remove(tmp_path / 'labels_masks' / 'validation0001_labels_semantic.png')
    with pytest.raises(DatasetError) as error:
        AnomalyDataset(str(tmp_path))
    assert str(tmp_path / 'images' / 'validation0001.webp') in str(error.value)
    assert str(tmp_path / 'labels_masks' / 'validation0001_labels_semantic.png') \
        in str(error.value)


def _subset(root, table):
    for sub in ('images', 'labels_masks'):
        (root / sub).mkdir(parents=True)
    raws = _write_pairs([(root / 'images' / '10.jpg', root / 'labels_masks' / '10.png'),
                         (root / 'images' / '2.webp', root / 'labels_masks' / '2.png')], table)
    return ['2', '10'], raws[::-1]


@pytest.mark.parametrize('folder, convention, table', [
    ('RoadAnomaly', 'road_anomaly', ROAD_ANOMALY_VALUES),
    ('RoadAnomaly21', 'smiyc', SMIYC_VALUES),
    ('RoadObsticle21', 'smiyc', SMIYC_VALUES),
    ('FS_LostFound_full', 'smiyc', SMIYC_VALUES),
    ('fs_static', 'smiyc', SMIYC_VALUES),
    ('LostAndFound', 'lost_and_found', LAF_VALUES),
])
def test_validation_subsets_take_the_convention_of_their_name(tmp_path, folder, convention,
                                                              table):
    names, raws = _subset(tmp_path / folder, table)
    dataset = open_anomaly_dataset(str(tmp_path / folder))
    assert isinstance(dataset, AnomalyDataset) and dataset.name == folder
    assert dataset.layout.name == 'validation_subset' and dataset.convention == convention
    assert dataset.describe_convention() == (
        f"{convention}: {CONVENTIONS[convention]} (of the validation_subset layout, folder "
        f"{folder!r})")
    _check(dataset, names, raws, table)


def _road_anomaly(root):
    (root / 'frames' / 'animals02_cow.labels').mkdir(parents=True)
    (root / 'frames' / 'animals01_sheep.labels').mkdir(parents=True)
    (root / 'frame_list.json').write_text('["animals01_sheep.jpg", "animals02_cow.jpg"]')
    names = ['animals01_sheep', 'animals02_cow']
    raws = _write_pairs([(root / 'frames' / f'{name}.jpg',
                          root / 'frames' / f'{name}.labels' / 'labels_semantic.png')
                         for name in names], ROAD_ANOMALY_VALUES)
    write_gray(str(root / 'frames' / 'animals01_sheep.labels' / 'labels_semantic_color.png'),
               np.zeros(HW, np.uint8))
    return names, raws


def test_road_anomaly_release(tmp_path):
    names, raws = _road_anomaly(tmp_path / 'RoadAnomaly_jpg')
    dataset = AnomalyDataset(str(tmp_path / 'RoadAnomaly_jpg'))
    assert dataset.layout.name == 'road_anomaly' and dataset.convention == 'road_anomaly'
    assert dataset.describe_convention().startswith(
        'road_anomaly: 2 (anomaly) -> 1, every other value -> 0 inlier, no void (of the '
        'road_anomaly layout')
    _check(dataset, names, raws, ROAD_ANOMALY_VALUES)


@pytest.mark.parametrize('image_folder', ['original', 'images'])
def test_fishyscapes_folder_copies(tmp_path, image_folder):
    root = tmp_path / 'fs_lost_and_found'
    for sub in (image_folder, 'labels', 'semantic'):
        (root / sub).mkdir(parents=True)
    raws = _write_pairs([(root / image_folder / f'{i}.png', root / 'labels' / f'{i}.png')
                         for i in (0, 1)], SMIYC_VALUES)
    dataset = AnomalyDataset(str(root))
    assert dataset.layout.name == 'fishyscapes' and dataset.convention == 'smiyc'
    assert dataset.describe_convention().startswith('smiyc: 0 inlier, 1 anomaly, 255 void')
    _check(dataset, ['0', '1'], raws, SMIYC_VALUES)


LAF_NAMES = {'test': ('02_Hanns_Klemm_Str_44', '02_Hanns_Klemm_Str_44_000001_000200'),
             'train': ('01_Hanns_Klemm_Str_45', '01_Hanns_Klemm_Str_45_000000_000080')}


def _lost_and_found(root):
    pairs = []
    for split, (city, name) in LAF_NAMES.items():
        for top in ('leftImg8bit', 'gtCoarse'):
            (root / top / split / city).mkdir(parents=True)
        pairs.append((root / 'leftImg8bit' / split / city / f'{name}_leftImg8bit.png',
                      root / 'gtCoarse' / split / city / f'{name}_gtCoarse_labelIds.png'))
        write_gray(str(root / 'gtCoarse' / split / city / f'{name}_gtCoarse_instanceIds.png'),
                   np.zeros(HW, np.uint8))
    return _write_pairs(pairs, LAF_VALUES)


def test_lost_and_found_maps_label_ids(tmp_path):
    raws = _lost_and_found(tmp_path / 'LostAndFound')
    dataset = AnomalyDataset(str(tmp_path / 'LostAndFound'))
    assert dataset.layout.name == 'lost_and_found' and dataset.convention == 'lost_and_found'
    assert dataset.describe_convention().startswith(
        'lost_and_found: gtCoarse labelIds: 1 (free road) -> 0 inlier, 2-200 (obstacles) -> 1 '
        'anomaly, 0 and 201-255 -> 255 void')
    _check(dataset, [LAF_NAMES['test'][1], LAF_NAMES['train'][1]], raws, LAF_VALUES)
    test_only = AnomalyDataset(str(tmp_path / 'LostAndFound'), split='test')
    _check(test_only, [LAF_NAMES['test'][1]], raws[:1], LAF_VALUES)
    with pytest.raises(DatasetError, match="no split 'val'.*found: test, train"):
        AnomalyDataset(str(tmp_path / 'LostAndFound'), split='val')


def test_cityscapes_folder_is_not_taken_for_lost_and_found(tmp_path):
    _lost_and_found(tmp_path)
    (tmp_path / 'gtFine').mkdir()
    with pytest.raises(DatasetError, match='Cityscapes.*CityscapesDataset'):
        AnomalyDataset(str(tmp_path))


# --- errors ------------------------------------------------------------------------------------

def test_unknown_layout_lists_every_expected_layout(tmp_path):
    (tmp_path / 'pictures').mkdir()
    with pytest.raises(DatasetError) as error:
        AnomalyDataset(str(tmp_path))
    message = str(error.value)
    assert 'not an anomaly benchmark folder' in message
    for layout in LAYOUTS.values():
        assert f'  - {layout.describe()}' in message
    for pairing in ('labels_masks/NAME_labels_semantic.png', 'labels_masks/NAME.png',
                    'frames/NAME.labels/labels_semantic.png', 'original/NAME.EXT',
                    'labels/NAME.png', 'NAME_gtCoarse_labelIds.png'):
        assert pairing in message
    with pytest.raises(DatasetError, match='does not exist'):
        AnomalyDataset(str(tmp_path / 'missing'))


def test_bundle_root_asks_for_one_subset(tmp_path):
    for folder in ('RoadAnomaly', 'fs_static', 'RoadAnomaly21'):
        _subset(tmp_path / 'Validation_Dataset' / folder, SMIYC_VALUES)
    (tmp_path / 'Validation_Dataset' / 'notes').mkdir()
    with pytest.raises(DatasetError) as error:
        AnomalyDataset(str(tmp_path / 'Validation_Dataset'))
    assert 'pass one subset folder' in str(error.value)
    assert 'holding RoadAnomaly, RoadAnomaly21, fs_static;' in str(error.value)


@pytest.mark.parametrize('make, image, label', [
    (lambda root: _subset(root, SMIYC_VALUES), 'images/2.webp', 'labels_masks/2.png'),
    (_smiyc, 'images/validation0000.jpg', 'labels_masks/validation0000_labels_semantic.png'),
    (_road_anomaly, 'frames/animals02_cow.jpg', 'frames/animals02_cow.labels/labels_semantic.png'),
])
def test_missing_label_names_image_and_expected_label(tmp_path, make, image, label):
    make(tmp_path)
    os.remove(tmp_path / label)
    with pytest.raises(DatasetError) as error:
        AnomalyDataset(str(tmp_path))
    assert str(error.value) == (f'no label for image {str(tmp_path / image)!r}: '
                                f'expected {str(tmp_path / label)!r}')


def test_missing_label_in_fishyscapes_and_lost_and_found(tmp_path):
    (tmp_path / 'fs' / 'original').mkdir(parents=True)
    (tmp_path / 'fs' / 'labels').mkdir()
    _image(tmp_path / 'fs' / 'original' / 'a.png')
    with pytest.raises(DatasetError, match=r"original/a\.png'.*expected .*labels/a\.png'"):
        AnomalyDataset(str(tmp_path / 'fs'))
    _lost_and_found(tmp_path / 'laf')
    city, name = LAF_NAMES['train']
    os.remove(tmp_path / 'laf' / 'gtCoarse' / 'train' / city / f'{name}_gtCoarse_labelIds.png')
    with pytest.raises(DatasetError, match=f'{name}_leftImg8bit.png.*expected .*'
                                           f'{name}_gtCoarse_labelIds.png'):
        AnomalyDataset(str(tmp_path / 'laf'))


def test_files_are_read_lazily_and_unreadable_ones_are_named(tmp_path):
    _subset(tmp_path, SMIYC_VALUES)
    (tmp_path / 'images' / '10.jpg').write_bytes(b'not an image')
    dataset = AnomalyDataset(str(tmp_path))  # nothing is decoded yet
    items = iter(dataset)
    assert next(items)[0] == '2'
    with pytest.raises(ImageFormatError, match=r"10\.jpg"):
        next(items)
    (tmp_path / 'labels_masks' / '2.png').write_bytes(b'')
    with pytest.raises(ImageFormatError, match=r"labels_masks/2\.png"):
        next(iter(dataset))


def test_values_outside_the_convention_are_refused(tmp_path):
    _subset(tmp_path / 'fs_static', ROAD_ANOMALY_VALUES)  # 0 / 1 / 2 under a 0 / 1 / 255 name
    with pytest.raises(DatasetError, match=r"2\.png'.*label values \[2\]"):
        list(AnomalyDataset(str(tmp_path / 'fs_static')))
    dataset = AnomalyDataset(str(tmp_path / 'fs_static'), convention='road_anomaly')
    assert dataset.describe_convention().endswith('(given)')
    assert all(set(np.unique(label)) <= {0, 1} for _, _, label in dataset)
    with pytest.raises(DatasetError, match='unknown label convention.*smiyc'):
        AnomalyDataset(str(tmp_path / 'fs_static'), convention='cityscapes')
    with pytest.raises(DatasetError, match='has no splits'):
        AnomalyDataset(str(tmp_path / 'fs_static'), split='test')


def test_image_and_label_of_different_sizes_are_refused(tmp_path):
    _subset(tmp_path, SMIYC_VALUES)
    write_gray(str(tmp_path / 'labels_masks' / '2.png'), np.zeros((6, 8), np.uint8))
    with pytest.raises(DatasetError, match=r"2\.webp' is 16x12 but its label .* is 8x6"):
        next(iter(AnomalyDataset(str(tmp_path))))


def test_map_label_over_every_value():
    raw = np.arange(256, dtype=np.uint8).reshape(16, 16)
    road_anomaly = map_label(raw, 'road_anomaly').ravel()
    assert road_anomaly[2] == 1 and np.delete(road_anomaly, 2).max() == 0
    laf = map_label(raw, 'lost_and_found').ravel()
    assert laf[0] == 255 and laf[1] == 0 and (laf[2:201] == 1).all() and (laf[201:] == 255).all()
    smiyc = np.array([[0, 1], [255, 1]], np.uint8)
    np.testing.assert_array_equal(map_label(smiyc, 'smiyc'), smiyc)
    assert map_label(smiyc, 'smiyc') is not smiyc
    with pytest.raises(DatasetError, match=r'label values \[2, 3\]'):
        map_label(raw[:1, :4], 'smiyc')


# --- the real data -----------------------------------------------------------------------------

REAL_SUBSETS = {'RoadAnomaly21': (10, 'smiyc'), 'RoadObsticle21': (30, 'smiyc'),
                'fs_static': (30, 'smiyc'), 'RoadAnomaly': (60, 'road_anomaly')}


@pytest.mark.parametrize('subset', sorted(REAL_SUBSETS))
def test_real_validation_subsets_load(shared_data, subset):
    count, convention = REAL_SUBSETS[subset]
    dataset = AnomalyDataset(os.path.join(shared_data, 'Validation_Dataset', subset))
    assert (len(dataset), dataset.convention) == (count, convention)
    assert dataset.layout.name == 'validation_subset'
    values = set()
    for sample in dataset.samples:  # labels only: decoding every image would be slow
        values |= set(np.unique(map_label(read_label(sample.label_path), convention)).tolist())
    assert values == ({0, 1} if subset == 'RoadAnomaly' else {0, 1, 255})


def test_real_bundle_root_is_refused(shared_data):
    with pytest.raises(DatasetError) as error:
        AnomalyDataset(os.path.join(shared_data, 'Validation_Dataset'))
    assert 'pass one subset folder' in str(error.value)
    for subset in REAL_SUBSETS:
        assert subset in str(error.value)
