"""SegmentMeIfYouCan component metrics on hand-made masks, answers worked out in the comments."""
import math

import numpy as np
import pytest
from scipy import ndimage

from anomseg_ros.errors import ConfigError
from anomseg_ros.evaluation.components import (DEFAULT_THRESHOLDS, ComponentMetrics,
                                               component_metrics_at_threshold, component_scores)

TAUS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75)


def _mask(rows):
    """'#' or '1' = 1, '.' or '0' = 0, 'v' = 255 (void): a picture of the array."""
    values = {'#': 1, '1': 1, '.': 0, '0': 0, 'v': 255}
    return np.array([[values[c] for c in row] for row in rows], np.uint8)


def _evaluate(prediction, label, **kw):
    metrics = ComponentMetrics(**kw)
    metrics.update(_mask(prediction).astype(bool), _mask(label))
    return metrics.compute()


def _f1_by_tau(result):
    return dict(zip(result['thresholds'], result['f1']))


def test_default_thresholds_are_the_eleven_decimal_values():
    assert DEFAULT_THRESHOLDS == TAUS


def test_perfect_prediction():
    label = ['......',
             '.##...',
             '.##...',
             '......']
    # one component of 4 pixels predicted exactly: sIoU 4/4, PPV 4/4; TP at every tau
    result = _evaluate(label, label)
    assert result['siou_gt'] == 1.0 and result['ppv'] == 1.0
    assert result['mean_f1'] == 1.0 and result['f1_at_0.5'] == 1.0
    assert result['tp'] == [1] * 11 and result['fn'] == [0] * 11 and result['fp'] == [0] * 11
    assert result['num_gt_components'] == 1 and result['num_pred_components'] == 1
    assert result['num_images'] == 1


def test_prediction_covering_half_a_component():
    label = ['####....',
             '####....']
    pred = ['##......',
            '##......']
    # |k| = 8, P(k) = the 4 left pixels: sIoU = 4 / 8 = 0.5, PPV = 4 / 4 = 1.
    # TP where 0.5 > tau (0.25 .. 0.45, 5 values), FN at 0.5 and above (6 values), never FP:
    # F1 = 2 / 2 = 1 below 0.5 and 0 / 1 = 0 from 0.5 on; mean F1 = 5 / 11
    result = _evaluate(pred, label)
    assert result['siou_gt'] == 0.5 and result['ppv'] == 1.0
    assert result['tp'] == [1] * 5 + [0] * 6
    assert result['fn'] == [0] * 5 + [1] * 6
    f1 = _f1_by_tau(result)
    assert f1[0.25] == 1.0 and f1[0.45] == 1.0
    assert f1[0.5] == 0.0 and f1[0.75] == 0.0
    assert result['f1_at_0.5'] == 0.0
    assert result['mean_f1'] == pytest.approx(5 / 11)


def test_siou_exactly_at_a_threshold_is_a_false_negative():
    label = ['##########']
    pred = ['###.......']
    # sIoU = 3 / 10 = 0.3 exactly: TP only at 0.25 (0.3 > 0.3 is false)
    result = _evaluate(pred, label)
    assert result['siou_gt'] == 0.3
    assert result['tp'] == [1] + [0] * 10


def test_prediction_spilling_outside_the_component():
    label = ['..##..',
             '..##..']
    pred = ['......',
            '.###..']
    # P(k) = 3 pixels, 2 of them on k: sIoU = 2 / |k u P| = 2 / 5 = 0.4, PPV = 2 / 3.
    # TP at 0.25, 0.30, 0.35 (0.4 > tau); FN from 0.4 on (8 values); FP where 2/3 <= tau:
    # 0.7 and 0.75. F1: 1 (x3), 0 (x8); mean 3 / 11
    result = _evaluate(pred, label)
    assert result['siou_gt'] == pytest.approx(0.4)
    assert result['ppv'] == pytest.approx(2 / 3)
    assert result['tp'] == [1] * 3 + [0] * 8
    assert result['fp'] == [0] * 9 + [1] * 2
    assert result['mean_f1'] == pytest.approx(3 / 11)


def test_one_prediction_over_two_components_penalises_neither_for_the_other():
    label = ['##.###.']
    pred = ['######.']
    # GT A = columns 0-1, GT B = columns 3-5, one prediction P = columns 0-5 (6 pixels).
    # sIoU(A) = |A n P| / |(A u P) \ B| = 2 / |{0..5} \ {3,4,5}| = 2 / 3 (not 2 / 6);
    # sIoU(B) = 3 / |{0..5} \ {0,1}| = 3 / 4; PPV(P) = 5 / 6, never FP.
    # A is TP for tau < 2/3 (0.25 .. 0.65, 9 values), B for tau < 0.75 (10 values).
    # F1: 1 up to 0.65, at 0.70 TP 1 FN 1 -> 2 / 3, at 0.75 -> 0; mean (9 + 2/3) / 11 = 29 / 33
    result = _evaluate(pred, label)
    assert result['num_gt_components'] == 2 and result['num_pred_components'] == 1
    assert result['siou_gt'] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert result['ppv'] == pytest.approx(5 / 6)
    assert result['tp'] == [2] * 9 + [1, 0]
    f1 = _f1_by_tau(result)
    assert f1[0.5] == 1.0 and f1[0.7] == pytest.approx(2 / 3) and f1[0.75] == 0.0
    assert result['mean_f1'] == pytest.approx(29 / 33)
    siou, ppv = component_scores(_mask(pred).astype(bool), _mask(label))
    assert siou == pytest.approx([2 / 3, 3 / 4]) and ppv == pytest.approx([5 / 6])


def test_false_positive_blob():
    label = ['......',
             '......',
             '......']
    pred = ['......',
            '..##..',
            '......']
    # no ground truth: PPV = 0 / 2 = 0, FP at every tau; F1 = 0 / (0 + 0 + 1) = 0
    result = _evaluate(pred, label)
    assert result['ppv'] == 0.0 and math.isnan(result['siou_gt'])
    assert result['fp'] == [1] * 11 and result['tp'] == [0] * 11
    assert result['mean_f1'] == 0.0
    # beside a perfectly found object: TP 1, FN 0, FP 1 -> F1 = 2 / 3 at every tau
    label = ['##....', '##....', '......']
    pred = ['##....', '##.##.', '......']
    result = _evaluate(pred, label)
    assert result['f1'] == pytest.approx([2 / 3] * 11)
    assert result['ppv'] == pytest.approx(0.5)  # (1 + 0) / 2


def test_void_pixels_are_ignored():
    # a prediction only on void is no component, so no FP
    result = _evaluate(['.##.'], ['.vv.'])
    assert result['num_pred_components'] == 0 and result['fp'] == [0] * 11
    assert math.isnan(result['mean_f1'])  # nothing to find and nothing found
    # the void half of a prediction counts neither in |p| nor in the union: PPV 2/2, sIoU 2/2
    result = _evaluate(['####..'], ['##vv..'])
    assert result['ppv'] == 1.0 and result['siou_gt'] == 1.0 and result['mean_f1'] == 1.0
    # void cuts a prediction before labelling: columns 0 and 2 are two false positives
    result = _evaluate(['###'], ['.v.'])
    assert result['num_pred_components'] == 2 and result['fp'] == [2] * 11


def test_min_gt_size():
    label = ['##......',
             '##...#..',
             '........']
    pred = ['##......',
            '##...##.',
            '........']
    # big object (4 px) found exactly; small object (1 px) under a 2-pixel prediction.
    # Kept (min_gt_size 0 or 1, "smaller than" is strict): small sIoU = 1 / 2, PPV of its
    # prediction 1 / 2 -> siou_gt = (1 + 0.5) / 2, ppv = (1 + 0.5) / 2;
    # at 0.5: TP 1, FN 1, FP 1 -> F1 = 2 / 4
    for min_gt_size in (0, 1):
        result = _evaluate(pred, label, min_gt_size=min_gt_size)
        assert result['num_gt_components'] == 2
        assert result['siou_gt'] == 0.75 and result['ppv'] == 0.75
        assert result['f1_at_0.5'] == 0.5
    # Ignored (min_gt_size 2): its pixel becomes void, so the small prediction is 1 pixel on
    # inliers: PPV 0 -> FP at every tau; TP 1 -> F1 = 2 / 3 everywhere
    result = _evaluate(pred, label, min_gt_size=2)
    assert result['num_gt_components'] == 1 and result['num_pred_components'] == 2
    assert result['siou_gt'] == 1.0 and result['ppv'] == 0.5
    assert result['f1'] == pytest.approx([2 / 3] * 11)
    # a prediction lying only on an ignored object is no component at all
    result = _evaluate(['##...#..', '##......'], ['##...#..', '##......'], min_gt_size=2)
    assert result['num_pred_components'] == 1 and result['mean_f1'] == 1.0


def test_min_pred_size():
    label = ['###.....']
    pred = ['###..#..']
    # the 1-pixel blob is an FP unless discarded: F1 = 2 / 3, or 1 with min_pred_size 2
    assert _evaluate(pred, label)['mean_f1'] == pytest.approx(2 / 3)
    kept = _evaluate(pred, label, min_pred_size=2)
    assert kept['num_pred_components'] == 1 and kept['mean_f1'] == 1.0
    # min_pred_size 4 also removes the 3-pixel hit: sIoU 0, FN everywhere, no PPV to average
    none = _evaluate(pred, label, min_pred_size=4)
    assert none['siou_gt'] == 0.0 and none['mean_f1'] == 0.0 and math.isnan(none['ppv'])
    # the size is counted on non-void pixels: 2 pixels of which 1 on void is too small for 2
    assert _evaluate(['##'], ['.v'], min_pred_size=2)['num_pred_components'] == 0


def _random_pair(rng, shape=(24, 30)):
    label = ndimage.binary_opening(rng.random(shape) < 0.35).astype(np.uint8)
    label[rng.random(shape) < 0.08] = 255
    prediction = ndimage.binary_dilation(label == 1) ^ (rng.random(shape) < 0.15)
    return prediction, label


@pytest.mark.parametrize('min_gt_size,min_pred_size', [(0, 0), (3, 0), (0, 3), (4, 5)])
def test_two_images_accumulate_like_one_image_side_by_side(min_gt_size, min_pred_size):
    rng = np.random.default_rng(7)
    (pred_a, label_a), (pred_b, label_b) = _random_pair(rng), _random_pair(rng)
    kw = dict(min_gt_size=min_gt_size, min_pred_size=min_pred_size)
    separate = ComponentMetrics(**kw)
    separate.update(pred_a, label_a)
    separate.update(pred_b, label_b)
    # an inlier column between them, so no component touches across the seam
    gap = np.zeros((label_a.shape[0], 1), np.uint8)
    joined = ComponentMetrics(**kw)
    joined.update(np.hstack([pred_a, gap.astype(bool), pred_b]),
                  np.hstack([label_a, gap, label_b]))
    one, two = joined.compute(), separate.compute()
    assert two['num_gt_components'] > 2 and two['num_pred_components'] > 2
    assert two['num_images'] == 2 and one['num_images'] == 1
    for key in ('tp', 'fn', 'fp', 'f1', 'num_gt_components', 'num_pred_components'):
        assert one[key] == two[key], key
    for key in ('siou_gt', 'ppv', 'mean_f1'):
        assert one[key] == pytest.approx(two[key]), key


def _scores_from_sets(prediction, label, min_gt_size, min_pred_size):
    """The definitions, one boolean mask per component (slow, plain)."""
    eight = np.ones((3, 3), bool)
    valid = label != 255
    gt_labels, num_gt = ndimage.label(label == 1, eight)
    gts = [gt_labels == i for i in range(1, num_gt + 1)]
    roi = valid.copy()
    for component in gts:
        if component.sum() < min_gt_size:
            roi &= ~component
    gts = [g for g in gts if g.sum() >= min_gt_size]
    pred_labels, num_pred = ndimage.label(prediction & valid, eight)
    preds = [pred_labels == j for j in range(1, num_pred + 1)]
    preds = [p & roi for p in preds if p.sum() >= min_pred_size]
    preds = [p for p in preds if p.any()]
    any_gt = np.zeros_like(roi)
    for g in gts:
        any_gt |= g
    siou = []
    for k in gts:
        covering = np.zeros_like(roi)
        for p in preds:
            if (p & k).any():
                covering |= p
        others = any_gt & ~k
        siou.append((k & covering).sum() / ((k | covering) & ~others).sum())
    ppv = [(p & any_gt).sum() / p.sum() for p in preds]
    return np.array(siou), np.array(ppv)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('min_gt_size,min_pred_size', [(0, 0), (3, 4)])
def test_vectorised_scores_match_the_set_definitions(seed, min_gt_size, min_pred_size):
    prediction, label = _random_pair(np.random.default_rng(seed), shape=(40, 50))
    siou, ppv = component_scores(prediction, label, min_gt_size=min_gt_size,
                                 min_pred_size=min_pred_size)
    expected_siou, expected_ppv = _scores_from_sets(prediction, label, min_gt_size,
                                                    min_pred_size)
    assert len(expected_siou) > 3 and len(expected_ppv) > 3
    np.testing.assert_allclose(siou, expected_siou, rtol=1e-12)
    np.testing.assert_allclose(ppv, expected_ppv, rtol=1e-12)
    metrics = ComponentMetrics(min_gt_size=min_gt_size, min_pred_size=min_pred_size)
    metrics.update(prediction, label)
    result = metrics.compute()
    assert result['tp'] == [int((expected_siou > t).sum()) for t in TAUS]
    assert result['fp'] == [int((expected_ppv <= t).sum()) for t in TAUS]


def test_images_without_anomaly_or_prediction_add_nothing_and_empty_is_nan():
    empty = ComponentMetrics().compute()
    assert empty['num_images'] == 0
    for key in ('siou_gt', 'ppv', 'mean_f1', 'f1_at_0.5'):
        assert math.isnan(empty[key]), key
    metrics = ComponentMetrics()
    metrics.update(np.zeros((4, 5), bool), np.zeros((4, 5), np.uint8))
    result = metrics.compute()
    assert result['num_images'] == 1 and result['num_gt_components'] == 0
    assert result['tp'] == result['fn'] == result['fp'] == [0] * 11
    assert math.isnan(result['mean_f1'])
    metrics.update(_mask(['#.']).astype(bool), _mask(['#.']))
    assert metrics.compute()['mean_f1'] == 1.0


def test_shape_mismatch_says_which_is_which():
    metrics = ComponentMetrics()
    with pytest.raises(ValueError, match=r'prediction mask \(2, 3\) and label \(3, 2\)'):
        metrics.update(np.zeros((2, 3), bool), np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match=r'score map \(2, 3\) and label \(2, 4\)'):
        component_metrics_at_threshold([(np.zeros((2, 3)), np.zeros((2, 4), np.uint8))], 0.5)
    assert metrics.num_images == 0


def test_bad_inputs_and_settings_are_refused():
    with pytest.raises(ValueError, match='boolean'):
        ComponentMetrics().update(np.full((2, 2), 0.7), np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match='2-D'):
        ComponentMetrics().update(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), np.uint8))
    # 0/1 integer masks are accepted as they are
    metrics = ComponentMetrics()
    metrics.update(np.array([[1, 0]], np.uint8), _mask(['#.']))
    assert metrics.compute()['mean_f1'] == 1.0
    for kw in ({'min_gt_size': -1}, {'min_pred_size': 2.5}, {'thresholds': ()},
               {'thresholds': (0.5, 1.5)}):
        with pytest.raises(ConfigError):
            ComponentMetrics(**kw)
    # without 0.5 among the thresholds there is no F1 at 0.5
    metrics = ComponentMetrics(thresholds=(0.25, 0.75))
    metrics.update(_mask(['#.']).astype(bool), _mask(['#.']))
    assert math.isnan(metrics.compute()['f1_at_0.5'])
    assert metrics.compute()['f1'] == [1.0, 1.0]


def test_helper_thresholds_scores_inclusively():
    label = _mask(['..##.',
                   '..##.'])
    score = np.array([[0.1, 0.2, 0.5, 0.9, 0.3],
                      [0.0, 0.4, 0.5, 0.8, 0.1]], np.float32)
    # score >= 0.5 is exactly the object: perfect
    result = component_metrics_at_threshold([(score, label)], 0.5)
    assert result['mean_f1'] == 1.0 and result['threshold'] == 0.5
    # at 0.6 only column 3 remains: sIoU 2 / 4, PPV 1 -> TP below 0.5 only
    result = component_metrics_at_threshold([(score, label)] * 2, 0.6)
    assert result['num_images'] == 2 and result['siou_gt'] == 0.5
    assert result['tp'] == [2] * 5 + [0] * 6
    # min sizes reach the accumulator: a 2-pixel hit is dropped with min_pred_size 3
    result = component_metrics_at_threshold([(score, label)], 0.6, min_pred_size=3)
    assert result['num_pred_components'] == 0
    # NaN scores are refused where they are evaluated, accepted on void
    score[0, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        component_metrics_at_threshold([(score, label)], 0.5)
    label[0, 0] = 255
    assert component_metrics_at_threshold([(score, label)], 0.5)['mean_f1'] == 1.0


def test_segmentmeifyoucan_track_sizes_drop_specks_and_small_objects():
    """The obstacle track's sizes (objects of 10 pixels, segments of 50) on a hand-made 12x20
    image: a 3x3 object (9 pixels) is ignored, a 4x4 one (16) is kept; of the predictions, an
    8-pixel speck is dropped and a 10x6 block (60 pixels) covering the kept object is kept."""
    from anomseg_ros.evaluation.components import SMIYC_MIN_SIZES, track_of
    assert SMIYC_MIN_SIZES == {'anomaly': (100, 500), 'obstacle': (10, 50)}
    label = np.zeros((12, 20), np.uint8)
    label[1:4, 1:4] = 1          # 9 pixels: under 10, ignored (its pixels become void)
    label[6:10, 6:10] = 1        # 16 pixels: evaluated
    prediction = np.zeros_like(label, dtype=bool)
    prediction[0:2, 14:18] = True  # 8 pixels: a speck under 50, dropped
    prediction[5:11, 4:14] = True  # 60 pixels over the 16-pixel object
    metrics = ComponentMetrics(min_gt_size=10, min_pred_size=50)
    metrics.update(prediction, label)
    result = metrics.compute()
    # one object: sIoU = 16 / 60; one segment: PPV = 16 / 60 = 0.267
    assert result['num_gt_components'] == 1 and result['num_pred_components'] == 1
    assert result['siou_gt'] == pytest.approx(16 / 60)
    assert result['ppv'] == pytest.approx(16 / 60)
    # tau 0.25: TP 1 (0.267 > 0.25), FP 0 (PPV 0.267 > 0.25); tau >= 0.3: FN 1, FP 1
    assert result['tp'][0] == 1 and result['fp'][0] == 0
    assert result['f1'][0] == 1.0 and result['f1'][1:] == [0.0] * 10
    assert result['mean_f1'] == pytest.approx(1 / 11)
    # with nothing removed, the speck and the small object count: 2 objects, 2 segments
    everything = ComponentMetrics()
    everything.update(prediction, label)
    assert everything.compute()['num_gt_components'] == 2
    assert everything.compute()['num_pred_components'] == 2
    # at a quarter of the area (a 2048x1024 label compared at 1024x512) the sizes are 3 and 13
    from anomseg_ros.evaluation.components import scaled_size
    assert (scaled_size(10, 0.25), scaled_size(50, 0.25), scaled_size(0, 0.25)) == (3, 13, 0)
    assert scaled_size(1, 0.01) == 1
    small = ComponentMetrics(min_gt_size=40, min_pred_size=200)
    small.update(prediction, label, size_scale=0.25)  # 10 and 50 at this image's scale
    assert small.compute()['siou_gt'] == pytest.approx(16 / 60)
    for name, track in (('RoadObstacle21', 'obstacle'), ('RoadObsticle21', 'obstacle'),
                        ('LostAndFound', 'obstacle'), ('fs_lost_and_found', 'obstacle'),
                        ('RoadAnomaly21', 'anomaly'), ('fs_static', 'anomaly'),
                        ('RoadAnomaly', 'anomaly')):
        assert track_of(name) == track, name
