"""The detector pipeline on arrays, and dataset evaluation against scikit-learn."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.data.images import write_rgb
from anomseg_ros.errors import ConfigError, DatasetError, ImageFormatError
from anomseg_ros.evaluation.anomaly import evaluate_anomaly
from anomseg_ros.pipeline import Detector

from tiny_data import write_benchmark


@pytest.fixture(scope='module')
def detector(random_checkpoint):
    return Detector.from_checkpoint(random_checkpoint, scorer='msp', threshold=0.9)


def test_outputs_have_the_input_resolution(detector, rgb_image):
    result = detector.predict(rgb_image)
    assert result.labels.shape == result.score_map.shape == result.mask.shape == (48, 80)
    assert result.labels.dtype == np.uint8 and result.score_map.dtype == np.float32
    valid = result.labels[result.labels != 255]
    assert valid.size == 0 or valid.max() < 19
    np.testing.assert_array_equal(result.mask, result.score_map >= 0.9)


def test_batch_of_different_sizes_equals_single_calls(detector, rgb_image):
    other = np.ascontiguousarray(rgb_image[:32, :40])
    batch = detector.predict_batch([rgb_image, other])
    for image, result in zip([rgb_image, other], batch):
        single = detector.predict(image)
        np.testing.assert_allclose(result.score_map, single.score_map, atol=1e-5)
        assert result.score_map.shape == image.shape[:2]


def test_void_output_becomes_label_255(detector):
    logits = torch.zeros(1, 20, 2, 2)
    logits[0, 19, 0, 0] = 9.0
    logits[0, 3, 1, 1] = 9.0
    labels = detector.semantic(logits)[0]
    assert labels[0, 0] == 255 and labels[1, 1] == 3


def test_non_rgb_input_is_refused(detector):
    with pytest.raises(ImageFormatError, match='RGB'):
        detector.predict(np.zeros((8, 8), np.uint8))


def test_bad_input_size_and_device_are_refused(random_checkpoint):
    with pytest.raises(ConfigError, match='multiples of 8'):
        Detector.from_checkpoint(random_checkpoint, input_size_hw=(60, 100))
    with pytest.raises(ConfigError, match='device'):
        Detector.from_checkpoint(random_checkpoint, device='tpu')


def _tiny_benchmark(root, count=3):
    road_anomaly = root.name == 'RoadAnomaly'  # its own convention: 2 anomaly, no void
    return write_benchmark(root, count, anomaly=2 if road_anomaly else 1, top_rows=5,
                           top_value=0 if road_anomaly else 255)


@pytest.mark.parametrize('folder', ['RoadAnomaly21', 'RoadAnomaly'])
def test_evaluation_pools_pixels_like_sklearn(detector, tmp_path, folder):
    dataset = AnomalyDataset(str(_tiny_benchmark(tmp_path / folder)))
    assert dataset.convention == ('road_anomaly' if folder == 'RoadAnomaly' else 'smiyc')
    results = evaluate_anomaly(detector, dataset, ['msp', 'maxlogit'])
    for name in ('msp', 'maxlogit'):
        scores, labels = [], []
        for _, image, label in dataset:
            score = detector.scorer.__class__(num_inlier_classes=19)(detector.logits([image])) \
                if name == 'msp' else -detector.logits([image])[:, :19].amax(1)
            valid = label != 255
            scores.append(score[0].numpy()[valid])
            labels.append(label[valid])
        expected = average_precision_score(np.concatenate(labels), np.concatenate(scores))
        assert results[name]['auprc'] == pytest.approx(expected, abs=0.005)


def test_dataset_errors_say_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match='images/ and labels_masks/'):
        AnomalyDataset(str(tmp_path))
    (tmp_path / 'images').mkdir()
    (tmp_path / 'labels_masks').mkdir()
    write_rgb(str(tmp_path / 'images' / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DatasetError, match='no label for image'):
        AnomalyDataset(str(tmp_path))


def test_colorize_and_overlay_paint_what_they_say():
    """The node's picture outputs (a gather of 32-bit palette words, and a masked copy)
    against the plain definitions: palette indexing, and (1 - alpha) image + alpha red under
    the mask only."""
    import cv2
    from anomseg_ros.labels import colorize, PALETTE
    from anomseg_ros.visualize import overlay
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 256, (37, 53)).astype(np.uint8)
    np.testing.assert_array_equal(colorize(labels), PALETTE[labels])
    np.testing.assert_array_equal(colorize(labels[:, ::2]), PALETTE[labels[:, ::2]])  # a view
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mask = rng.random((37, 53)) < 0.3
    for alpha in (0.3, 0.6):
        red = np.full_like(image, (255, 0, 0))
        expected = np.where(mask[..., None], cv2.addWeighted(image, 1 - alpha, red, alpha, 0),
                            image)
        painted = overlay(image, mask, alpha=alpha)
        assert np.abs(painted.astype(int) - expected).max() <= 1  # rounding once or twice
        np.testing.assert_array_equal(painted[~mask], image[~mask])
    np.testing.assert_array_equal(overlay(image, np.zeros_like(mask)), image)
