"""The training losses of paper 001 (cross-entropy, focal, LogitNorm, EIML) and their sums:
values against hand computations, and that each one decreases under a few optimiser steps."""
import math

import pytest
import torch

from anomseg_ros.backbones.heads import WithIsoMaxPlus
from anomseg_ros.errors import ConfigError
from anomseg_ros.training.losses import (FocalLoss, IsoMaxPlusLoss, LogitNormLoss, loss_title,
                                         make_criterion, needs_isomax_head, parse_loss_spec)

# three pixels of two classes: p(class 0) = 3/4 at both scored pixels; the third is ignored
LOGITS = torch.tensor([math.log(3.0), math.log(3.0), 0.0]).view(1, 1, 1, 3)
LOGITS = torch.cat([LOGITS, torch.zeros_like(LOGITS)], dim=1)
LABELS = torch.tensor([0, 1, 255]).view(1, 1, 3)
FOCAL_0 = -(0.25 ** 2) * math.log(0.75)   # target 0, p_t = 3/4
FOCAL_1 = -(0.75 ** 2) * math.log(0.25)   # target 1, p_t = 1/4


def test_focal_loss_by_hand():
    assert FocalLoss()(LOGITS, LABELS).item() == pytest.approx((FOCAL_0 + FOCAL_1) / 2)
    weighted = FocalLoss(class_weights=torch.tensor([1.0, 3.0]))(LOGITS, LABELS)
    assert weighted.item() == pytest.approx((FOCAL_0 + 3 * FOCAL_1) / 4)
    # gamma 0 is cross-entropy
    ce = (-math.log(0.75) - math.log(0.25)) / 2
    assert FocalLoss(gamma=0)(LOGITS, LABELS).item() == pytest.approx(ce)


def test_logitnorm_by_hand():
    logits = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # norm 5: / (5 * 0.04) -> (15, 20)
    loss = LogitNormLoss(tau=0.04)(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(5)), rel=1e-5)
    # scaling the logits does not change it: only their direction counts
    assert LogitNormLoss()(7 * logits, torch.zeros(1, 1, 1, dtype=torch.long)).item() == \
        pytest.approx(loss.item(), rel=1e-5)


def test_eiml_is_cross_entropy_of_entropic_scaled_distances():
    distances = torch.tensor([0.5, 1.0]).view(1, 2, 1, 1)
    loss = IsoMaxPlusLoss(entropic_scale=10)(-distances, torch.zeros(1, 1, 1, dtype=torch.long))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-5)), rel=1e-5)


def test_weighted_sum_void_class_and_auxiliary_outputs():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    total = make_criterion('0.5*eiml+focal')(logits, labels)
    parts = 0.5 * IsoMaxPlusLoss()(logits, labels) + FocalLoss()(logits, labels)
    assert total.item() == pytest.approx(parts.item(), rel=1e-6)
    # void: the ignored pixels become the void class
    labels[0, 0, 0] = 255
    with_void = make_criterion('ce', void_class=2)(logits, labels)
    relabelled = labels.clone()
    relabelled[0, 0, 0] = 2
    assert with_void.item() == pytest.approx(make_criterion('ce')(logits, relabelled).item())
    # auxiliary outputs add aux_weight times their loss
    aux = torch.randn(2, 3, 4, 4)
    criterion = make_criterion('ce', aux_weight=0.4)
    assert criterion((logits, aux), relabelled).item() == pytest.approx(
        criterion(logits, relabelled).item() + 0.4 * criterion(aux, relabelled).item(), rel=1e-6)


@pytest.mark.parametrize('spec', ['ce', 'focal', 'logitnorm', 'eiml', 'eiml+focal',
                                  'eiml+ce', 'logitnorm+ce', 'logitnorm+focal'])
def test_each_loss_decreases_under_a_few_optimizer_steps(spec):
    torch.manual_seed(0)
    images = torch.rand(4, 3, 8, 8)
    labels = (images[:, 0] > images[:, 1]).long() + (images[:, 2] > 0.7).long()  # 3 classes
    model = torch.nn.Conv2d(3, 3, 1)
    if needs_isomax_head(spec):
        model = WithIsoMaxPlus(model, 3)
    criterion = make_criterion(spec)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(40):
        loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses[::10]


@pytest.mark.parametrize('spec', ['', 'ce+ce', 'dice', '-1*ce', 'x*focal'])
def test_bad_loss_specs_are_refused_with_the_valid_names(spec):
    with pytest.raises(ConfigError, match='ce'):
        parse_loss_spec(spec)


def test_spec_parsing_and_titles():
    assert parse_loss_spec('eiml+0.5*focal') == [(1.0, 'eiml'), (0.5, 'focal')]
    assert loss_title('eiml+focal') == 'EIML + FL'
    assert needs_isomax_head('logitnorm+eiml') and not needs_isomax_head('logitnorm+ce')
