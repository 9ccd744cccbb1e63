"""Scorers against hand-computed values (papers 000 eqs. 7-11, 004 eq. 4) and the registry."""
import math

import numpy as np
import pytest
import torch

from anomseg_ros.errors import ConfigError, UnknownNameError
from anomseg_ros.scoring import create_scorer, list_scorers

# one pixel, three classes: logits (2, 1, 0) and a fourth "void" channel of logit 1
LOGITS = torch.tensor([2.0, 1.0, 0.0, 1.0]).view(1, 4, 1, 1)
EXP = [math.exp(v) for v in (2.0, 1.0, 0.0)]
SOFTMAX = [e / sum(EXP) for e in EXP]


def _value(name, **params):
    return create_scorer(name, num_inlier_classes=3, **params)(LOGITS).item()


def test_msp_is_one_minus_max_softmax_of_inliers():
    assert _value('msp') == pytest.approx(1 - SOFTMAX[0], rel=1e-6)


def test_msp_with_temperature_is_eq10():
    exp = [math.exp(v / 2.0) for v in (2.0, 1.0, 0.0)]
    assert _value('msp', temperature=2.0) == pytest.approx(1 - exp[0] / sum(exp), rel=1e-6)
    assert create_scorer('temperature').temperature == 1.5  # paper 000's chosen T


def test_msp_is_as_precise_as_float32_allows_where_the_network_is_sure():
    """Confident pixels (max softmax near 1) score near 0, and AuPRC ranks them: on the CPU
    msp stays within 2e-6 relative of float64 there (the small terms summed apart from the
    max's 1), and within 2e-7 everywhere, ties of the max logit included; the tensor path
    (CUDA, gradients) within 5e-7, which 1 - exp(max - logsumexp) missed by 1.1e-6 on
    logits near 10, rounding neighbours into ties."""
    torch.manual_seed(0)
    logits = 6 * torch.randn(1, 19, 200, 300)
    logits[0, 3, :10] = logits[0, :, :10].amax(dim=0)  # two classes at the max
    logits[0, 7, :5] = logits[0, :, :5].amax(dim=0)  # three
    exact = 1 - torch.softmax(logits.double(), dim=1).amax(dim=1)
    scorer = create_scorer('msp')
    with torch.inference_mode():
        scores = scorer(logits).double()
        tensor_path = scorer.score(logits).double()
    sure = exact < 0.01
    assert sure.sum() > 1000
    assert ((scores - exact)[sure].abs() / exact[sure]).max() < 2e-6
    assert (scores - exact).abs().max() < 2e-7
    assert (tensor_path - exact).abs().max() < 5e-7


def test_maxlogit_is_negative_max_logit():
    assert _value('maxlogit') == pytest.approx(-2.0)


def test_maxentropy_is_softmax_entropy_natural_log():
    expected = -sum(p * math.log(p) for p in SOFTMAX)
    assert _value('maxentropy') == pytest.approx(expected, rel=1e-6)


def test_energy_is_negative_logsumexp_of_inliers():
    assert _value('energy') == pytest.approx(-math.log(sum(EXP)), rel=1e-6)


def test_void_is_softmax_probability_of_the_void_channel():
    exp_all = EXP + [math.exp(1.0)]
    scorer = create_scorer('void', num_inlier_classes=3, void_channel=3)
    assert scorer(LOGITS).item() == pytest.approx(exp_all[3] / sum(exp_all), rel=1e-6)


def test_void_refuses_a_model_without_void_output():
    with pytest.raises(ConfigError, match='void'):
        create_scorer('void', num_inlier_classes=3, void_channel=None)(LOGITS[:, :3])


def test_inlier_scorers_ignore_the_void_channel():
    huge_void = LOGITS.clone()
    huge_void[0, 3] = 50.0
    for name in ('msp', 'maxlogit', 'maxentropy', 'energy'):
        scorer = create_scorer(name, num_inlier_classes=3)
        assert scorer(huge_void).item() == pytest.approx(scorer(LOGITS).item())


@pytest.mark.parametrize('name', list_scorers())
def test_every_scorer_gives_BHW_and_ranks_confident_pixels_lower(name):
    torch.manual_seed(0)
    logits = torch.randn(2, 20, 5, 7)
    logits[:, 0, 0, 0] = 30.0   # very confident inlier pixel
    logits[:, :19, 0, 1] = 0.0  # flat inlier logits: maximal uncertainty
    logits[:, 19, 0, 1] = 30.0  # ... and a winning void output
    if name == 'sleeg':  # its two OoD-head outputs come last; neutral ones leave the JEM term
        logits = torch.cat([logits[:, :19], torch.zeros(2, 2, 5, 7)], dim=1)
    if name.startswith('synboost'):  # its four maps come last: a network that follows H here
        from anomseg_ros.methods.synboost.maps import uncertainty_maps
        h, d = uncertainty_maps(logits[:, :19])
        logits = torch.cat([logits[:, :19], torch.stack([10 * h - 5, h, d, 0 * h], 1)], 1)
    params = {}
    if name == 'sml':  # needs per-class statistics; neutral ones leave MaxLogit's order
        params['class_stats'] = {'mean': [0.0] * 19, 'std': [1.0] * 19}
    scores = create_scorer(name, num_inlier_classes=19, **params)(logits)
    assert scores.shape == (2, 5, 7)
    assert torch.isfinite(scores).all()
    assert (scores[:, 0, 0] < scores[:, 0, 1]).all()


def test_unknown_scorer_lists_the_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        create_scorer('softmax_magic')
    for name in ('msp', 'maxlogit', 'maxentropy', 'energy', 'void'):
        assert name in str(err.value)


def test_bad_parameters_are_refused_with_the_accepted_ones():
    with pytest.raises(ConfigError, match='temperature'):
        create_scorer('maxlogit', temperature=2.0)
    with pytest.raises(ConfigError, match='between 0.01 and 100'):
        create_scorer('msp', temperature=0.0)
    with pytest.raises(ConfigError, match='NaN'):  # logits / 1e-40 overflow
        create_scorer('energy', temperature=1e-40)


@pytest.mark.parametrize('name', ['msp', 'temperature', 'maxentropy', 'energy', 'void'])
def test_classic_scorers_give_the_same_scores_by_blocks_of_rows_as_whole(name, monkeypatch):
    """The classic scorers but MaxLogit run on blocks of rows on the CPU
    (scoring.base.in_row_blocks); with 300 columns and blocks of 8,192 pixels a block is 27
    rows, so these 61 rows are three blocks, the last one short. The numbers agree to float32
    rounding (vector kernels split a block's tail differently; msp's sum of 19 terms near 1
    rounds to 1.2e-7)."""
    monkeypatch.setattr('anomseg_ros.scoring.base.BLOCK_PIXELS', 8192)
    torch.manual_seed(0)
    logits = 6 * torch.randn(2, 20, 61, 300)
    scorer = create_scorer(name, num_inlier_classes=19,
                           **({'void_channel': 19} if name == 'void' else {}))
    assert scorer.by_rows
    with torch.inference_mode():  # (msp's own CPU path is OpenCV's: the next test)
        blocks = scorer.pixelwise(scorer.score, logits)
    torch.testing.assert_close(blocks, scorer.score(logits), rtol=1e-5, atol=2.5e-7)
    assert not torch.equal(blocks[:, 27:], torch.zeros_like(blocks[:, 27:]))
    with_grad = logits.clone().requires_grad_()  # training: the whole map, gradients flow
    scorer(with_grad).sum().backward()
    assert with_grad.grad is not None and torch.isfinite(with_grad.grad).all()


@pytest.mark.parametrize('name,temperature', [('msp', 1.0), ('temperature', 1.5)])
def test_msp_on_opencv_planes_gives_the_scores_of_the_tensor_path(name, temperature):
    """On the CPU msp runs on OpenCV, one channel plane at a time, its rows split between
    PyTorch's number of threads (scoring.classic.max_softmax_by_planes): the scores of the
    tensor path to OpenCV's exp (1.1e-6 relative), for a batch of two, the 19 inliers of 20
    channels and a temperature; split or not, the same numbers. Channels-last logits, small
    maps and logits that want gradients take the tensor path."""
    from anomseg_ros.scoring.classic import by_planes_applies
    torch.manual_seed(0)
    logits = 6 * torch.randn(2, 20, 61, 300)
    scorer = create_scorer(name, num_inlier_classes=19)
    assert scorer.temperature == temperature
    threads = torch.get_num_threads()
    with torch.inference_mode():
        assert by_planes_applies(logits)
        torch.set_num_threads(2)
        try:
            planes = scorer(logits)
            torch.set_num_threads(1)
            assert torch.equal(scorer(logits), planes)  # one part a frame
        finally:
            torch.set_num_threads(threads)
        torch.testing.assert_close(planes, scorer.score(logits), rtol=1e-5, atol=5e-7)
        channels_last = logits.contiguous(memory_format=torch.channels_last)
        assert not by_planes_applies(channels_last)
        assert not by_planes_applies(logits[:, :, :8])  # too few rows to pay
        torch.testing.assert_close(scorer(logits[:, :, :8]), planes[:, :8], rtol=1e-5,
                                   atol=5e-7)
        torch.testing.assert_close(scorer(channels_last), planes, rtol=1e-5, atol=5e-7)
    with_grad = logits.clone().requires_grad_()
    assert not by_planes_applies(with_grad)
    scorer(with_grad).sum().backward()
    assert with_grad.grad is not None and torch.isfinite(with_grad.grad).all()


def test_learned_scores_by_rows_give_the_same_scores():
    """SLEEG's score is pixelwise and runs by rows; PEBAL smooths its energy over neighbouring
    pixels, so only its energy runs by rows and the smoothing sees the whole map (blocks would
    cut it at their borders)."""
    import anomseg_ros.methods  # noqa: F401 (registers the methods' scorers)
    torch.manual_seed(0)
    logits = 6 * torch.randn(1, 21, 61, 300)
    pebal = create_scorer('pebal', num_inlier_classes=19)
    sleeg = create_scorer('sleeg', num_inlier_classes=19)
    assert sleeg.by_rows and not pebal.by_rows
    for scorer in (pebal, sleeg):
        with torch.inference_mode():
            blocks = scorer(logits)
        with torch.enable_grad():  # the whole map at once
            whole = scorer(logits.clone().requires_grad_()).detach()
        torch.testing.assert_close(blocks, whole, rtol=1e-5, atol=1e-6)


# --- training-free refinements (scoring.refine) ----------------------------------------------

def _naive_boundary_suppression(score, labels, width=4, iterations=4):
    """SML's boundary suppression written out pixel by pixel, as its official code computes it
    (kornia's geodesic borders for the morphology, replicated edges for the 3x3 means)."""
    h, w = labels.shape

    def inside(y, x):
        return 0 <= y < h and 0 <= x < w
    dilated = np.array([[max(labels[y + dy, x + dx] for dy, dx in
                             ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)) if inside(y + dy, x + dx))
                         for x in range(w)] for y in range(h)])
    eroded = np.array([[min(labels[y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                            if inside(y + dy, x + dx)) for x in range(w)] for y in range(h)])
    boundaries = dilated != eroded
    out = score.astype(np.float64).copy()
    step = width // iterations
    for iteration in range(iterations):
        radius = 0 if iteration == iterations - 1 else width - step * iteration - 1
        band = np.array([[any(boundaries[yy, xx]
                              for yy in range(max(0, y - radius), min(h, y + radius + 1))
                              for xx in range(max(0, x - radius), min(w, x + radius + 1))
                              if abs(yy - y) + abs(xx - x) <= radius)
                          for x in range(w)] for y in range(h)])
        new = out.copy()
        for y in range(h):
            for x in range(w):
                if not band[y, x]:
                    continue
                total = count = 0.0
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                        if not band[yy, xx]:
                            total, count = total + out[yy, xx], count + 1
                if count:
                    new[y, x] = total / count
        out = new
    return out


def _naive_dilated_smoothing(score, size=7, sigma=1.0, dilation=6):
    h, w = score.shape
    x = np.arange(size) - (size - 1) / 2
    taps = np.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    out = np.zeros_like(score, dtype=np.float64)
    for y in range(h):
        for x_ in range(w):
            for a in range(size):
                for b in range(size):
                    yy = min(max(y + (a - size // 2) * dilation, 0), h - 1)
                    xx = min(max(x_ + (b - size // 2) * dilation, 0), w - 1)
                    out[y, x_] += kernel[a, b] * score[yy, xx]
    return out


def test_boundary_suppression_and_dilated_smoothing_against_a_hand_computed_case():
    from anomseg_ros.scoring.refine import boundary_suppression, dilated_smoothing
    rng = np.random.default_rng(7)
    labels = np.zeros((14, 17), np.uint8)
    labels[:, 9:] = 1
    labels[3:7, 2:6] = 2  # a small object of another class
    score = rng.random((14, 17)).astype(np.float32)
    suppressed = boundary_suppression(score, labels)
    np.testing.assert_allclose(suppressed, _naive_boundary_suppression(score, labels),
                               atol=1e-5)
    assert not np.allclose(suppressed, score)  # the class edges changed
    far = (slice(11, 14), slice(0, 5))  # more than 3 pixels from every class edge
    np.testing.assert_array_equal(suppressed[far], score[far])
    np.testing.assert_allclose(dilated_smoothing(suppressed),
                               _naive_dilated_smoothing(suppressed), atol=1e-5)
    np.testing.assert_allclose(dilated_smoothing(score, dilation=1),
                               _naive_dilated_smoothing(score, dilation=1), atol=1e-5)


def test_a_refined_scorer_is_a_scorer_name():
    from anomseg_ros.checkpoint import ModelInfo
    from anomseg_ros.errors import ConfigError
    from anomseg_ros.pipeline import make_scorer
    info = ModelInfo()
    logits = torch.randn(2, 20, 24, 40)
    for refinement in ('boundary', 'smooth'):
        refined = make_scorer(f'msp+{refinement}', info)
        assert refined.name == f'msp+{refinement}' and refined.bounds() == (0.0, 1.0)
        scores = refined(logits)
        assert scores.shape == (2, 24, 40) and 0 <= scores.min() and scores.max() <= 1
    with pytest.raises(ConfigError, match='unknown refinement'):
        make_scorer('maxlogit+blur', info)
