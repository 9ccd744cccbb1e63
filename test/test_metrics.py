"""Streaming metrics agree with scikit-learn on the same pixels; mIoU by hand."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from anomseg_ros.evaluation import AnomalyMetrics, SegmentationMetrics


def _images(seed, count=6, shape=(40, 60), offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        label = (rng.random(shape) < 0.1).astype(np.uint8)
        label[rng.random(shape) < 0.05] = 255
        score = scale * (rng.normal(size=shape) + 1.5 * (label == 1)) + offset
        yield score.astype(np.float32), label


# The bins are relative (float bits), so any scale works; what they cannot resolve is a spread
# far below 1e-3 of the scores' magnitude (e.g. 1000 +- 0.1), which no scorer here produces.
@pytest.mark.parametrize('offset,scale', [(0.0, 1.0), (-40.0, 1.0), (0.0, 1e-4), (0.0, 1e3),
                                          (-12.0, 3.0)])
def test_pooled_metrics_match_sklearn(offset, scale):
    metrics = AnomalyMetrics()
    scores, labels = [], []
    for score, label in _images(1, offset=offset, scale=scale):
        metrics.update(score, label)
        valid = label != 255
        scores.append(score[valid])
        labels.append(label[valid])
    scores, labels = np.concatenate(scores), np.concatenate(labels)
    result = metrics.compute()
    fpr, tpr, _ = roc_curve(labels, scores)
    assert result['auprc'] == pytest.approx(average_precision_score(labels, scores), abs=0.005)
    assert result['fpr95'] == pytest.approx(np.interp(0.95, tpr, fpr), abs=0.005)
    assert result['auroc'] == pytest.approx(roc_auc_score(labels, scores), abs=0.005)
    assert result['fpr95_first'] == pytest.approx(fpr[np.searchsorted(tpr, 0.95)], abs=0.005)
    assert result['num_anomaly_pixels'] == int(labels.sum())


def test_ties_are_handled_like_sklearn():
    score = np.array([[0.5, 0.5, 0.5, 0.1], [0.9, 0.1, 0.5, 0.9]], np.float32)
    label = np.array([[1, 0, 1, 0], [1, 0, 0, 0]], np.uint8)
    metrics = AnomalyMetrics()
    metrics.update(score, label)
    assert metrics.compute()['auprc'] == pytest.approx(
        average_precision_score(label.ravel(), score.ravel()), abs=1e-9)


def test_perfect_and_hopeless_scores():
    label = np.array([[0, 0, 1, 1]], np.uint8)
    perfect = AnomalyMetrics()
    perfect.update(np.array([[0.1, 0.2, 0.8, 0.9]], np.float32), label)
    assert perfect.compute()['auprc'] == pytest.approx(1.0)
    assert perfect.compute()['fpr95'] == pytest.approx(0.0)
    worst = AnomalyMetrics()
    worst.update(np.array([[0.8, 0.9, 0.1, 0.2]], np.float32), label)
    assert worst.compute()['fpr95'] == pytest.approx(1.0)
    assert worst.compute()['auroc'] == pytest.approx(0.0)


def test_memory_stays_bounded_whatever_the_number_of_pixels():
    metrics = AnomalyMetrics()
    before = metrics.positives.nbytes + metrics.negatives.nbytes
    for score, label in _images(2, count=3, shape=(512, 1024)):
        metrics.update(score, label)
    assert metrics.positives.nbytes + metrics.negatives.nbytes == before <= 16 * 2 ** 20


def test_no_anomaly_pixels_gives_nan_not_a_crash():
    metrics = AnomalyMetrics()
    metrics.update(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.uint8))
    assert np.isnan(metrics.compute()['auprc'])


def test_mismatched_sizes_and_nan_scores_are_refused():
    metrics = AnomalyMetrics()
    with pytest.raises(ValueError, match='differ in size'):
        metrics.update(np.zeros((4, 4)), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match='NaN'):
        metrics.update(np.full((2, 2), np.nan), np.zeros((2, 2), np.uint8))


def test_miou_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    prediction = np.array([[0, 1, 1, 1], [2, 255, 0, 1]], np.uint8)
    metrics = SegmentationMetrics(3, class_names=['a', 'b', 'c'])
    metrics.update(prediction, target)
    result = metrics.compute()
    # a: tp 1, fn 1 (pred b), fp 0 (the 0 at an ignored pixel does not count) -> 1/2
    # b: tp 3, fp 1 -> 3/4 ; c: tp 1, fn 1 (void prediction) -> 1/2
    assert result['per_class_iou'] == pytest.approx({'a': 0.5, 'b': 0.75, 'c': 0.5})
    assert result['miou'] == pytest.approx((0.5 + 0.75 + 0.5) / 3)
    assert result['pixel_accuracy'] == pytest.approx(5 / 7)


def test_operating_points_by_hand():
    from anomseg_ros.evaluation.metrics import AnomalyMetrics
    metrics = AnomalyMetrics()
    metrics.update(np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32),
                   np.array([[1, 1, 0, 0, 1]], np.uint8))
    tpr95 = metrics.operating_point('tpr95')  # all three anomaly pixels need 0.5
    assert tpr95['threshold'] == pytest.approx(0.5, rel=1e-3)  # scores are binned
    assert (tpr95['tpr'], tpr95['fpr'], tpr95['precision']) == pytest.approx((1.0, 1.0, 0.6))
    f1 = metrics.operating_point('f1')  # 2 of 3 found with no false positive: F1 0.8
    assert f1['threshold'] == pytest.approx(0.8, rel=1e-3) and f1['f1'] == pytest.approx(0.8)
    assert (f1['tpr'], f1['fpr'], f1['precision']) == pytest.approx((2 / 3, 0.0, 1.0))


def test_the_mask_at_a_threshold_by_hand():
    from anomseg_ros.evaluation.metrics import AnomalyMetrics
    metrics = AnomalyMetrics()
    metrics.update(np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], np.float32),
                   np.array([[1, 1, 0, 0, 1]], np.uint8))
    mask = metrics.at_threshold(0.7)  # flags 0.9, 0.8, 0.7: two right, one wrong
    assert (mask['precision'], mask['recall'], mask['fpr']) == pytest.approx((2 / 3, 2 / 3, 0.5))
    assert mask['iou'] == pytest.approx(2 / 4)  # 2 / (3 anomaly pixels + 1 false positive)


def test_labels_shrink_as_pil_does_keeping_the_odd_pixels_of_an_exact_2x():
    """The benchmarks' reference code shrinks labels with PIL's nearest: on an exact 2x the
    pixel under each output centre, the odd rows and columns (OpenCV's INTER_NEAREST keeps the
    even ones, which moves FPR95 on 2048x1024 sets)."""
    import cv2
    from PIL import Image
    from anomseg_ros.data.images import resize_label
    label = np.zeros((4, 8), np.uint8)
    label[1::2, 1::2] = 1      # anomaly on the odd pixels only
    label[0::2, 0::2] = 255    # void on the even ones
    shrunk = resize_label(label, (4, 2))
    assert (shrunk == 1).all()
    assert (cv2.resize(label, (4, 2), interpolation=cv2.INTER_NEAREST) == 255).all()
    rng = np.random.default_rng(0)
    for src_hw, dst_wh in (((1024, 2048), (1024, 512)), ((720, 1280), (1024, 512)),
                           ((37, 53), (20, 11)), ((10, 10), (25, 17))):
        label = rng.integers(0, 3, size=src_hw, dtype=np.uint8)
        pil = np.asarray(Image.fromarray(label).resize(dst_wh, Image.NEAREST))
        np.testing.assert_array_equal(resize_label(label, dst_wh), pil)
    assert resize_label(label, label.shape[::-1]) is label
