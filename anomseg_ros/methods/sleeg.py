"""SLEEG: Self-supervised Likelihood Estimation with Energy Guidance (paper 003).

A light OoD head ``h`` (three Conv-BN-ReLU blocks, then a 1x1 convolution to 2 channels) on
the frozen segmentation model's decoder features; the segmentation model is not updated and no
outlier data is used.

- Task-agnostic estimator (TAE, eqs. 4-5): ``p_a = softmax(h)``, cross-entropy between the
  pasted anomaly pixels (o = 1) and the normal ones (o = 0).
- Task-oriented residual estimator (TORE, eqs. 6-8): ``log p_t(o=1) = h[1] + JEM`` with
  ``JEM = -logsumexp(g)`` over the segmentation logits, trained with the margin loss
  ``{mean_id h[1] - mean_ood h[1] + gamma_hat}_+``, ``gamma_hat = gamma + mean_id JEM -
  mean_ood JEM`` (the energy-guided dynamic margin, gamma = 15), per image.
- Score (eq. 9): ``log p_a(o=1) + lambda * log p_t(o=1)``, lambda = 0.5.

Self-supervised anomalies: a patch library refreshed every iteration with random crops of the
inlier images; N = 10 patches pasted per image at random places, each cut to the convex polygon
around its Harris corners plus random points (or square, for the ablation). Adaptive mask
refinement (eqs. 10-11): inside the pasted area the threshold minimising the within-group
variance of the anomaly score (a grid scan) keeps the pixels above it as anomalies and ignores
the rest; the score is the JEM during the warm-up, the estimated one after.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.methods.base import Method, register_method
from anomseg_ros.methods.pebal import free_energy
from anomseg_ros.options import option
from anomseg_ros.scoring.base import Scorer
from anomseg_ros.scoring.registry import register_scorer

GAMMA = 15.0
LAMBDA = 0.5
NUM_PATCHES = 10
PATCH_SHAPES = ('convex', 'square')
ESTIMATORS = ('tae', 'tore')
IGNORE = VOID_LABEL


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class OodHead(nn.Module):
    """Three stacked Conv-BN-ReLU blocks and a 1x1 convolution to the 2 outputs (normal,
    anomaly); a ReLU on the outputs themselves would keep the logits from going negative."""

    def __init__(self, in_channels: int, mid_channels: int = 32):
        super().__init__()
        self.block1 = _conv_bn_relu(in_channels, mid_channels)
        self.block2 = _conv_bn_relu(mid_channels, mid_channels)
        self.block3 = _conv_bn_relu(mid_channels, mid_channels)
        self.classifier = nn.Conv2d(mid_channels, 2, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block3(self.block2(self.block1(features))))


class SleegModel(nn.Module):
    """A segmentation model with an OoD head on its ``forward_features``: the output is the
    segmentation logits with the head's two outputs appended, ``(B,C+2,H,W)``."""

    def __init__(self, segmenter: nn.Module, *, in_channels: Optional[int] = None,
                 mid_channels: int = 32):
        super().__init__()
        if not getattr(segmenter, 'has_features', False):
            core = getattr(segmenter, 'backbone', segmenter)  # under a distance head
            raise ConfigError(f'SLEEG puts its head on the decoder features; '
                              f'{type(core).__name__} does not split into forward_features and '
                              f'forward_head (erfnet and enet do)')
        self.segmenter = segmenter
        if in_channels is None:  # the width of this segmenter's decoder features, measured
            with torch.no_grad():
                was_training = segmenter.training
                in_channels = segmenter.eval().forward_features(
                    torch.zeros(1, 3, 64, 64)).shape[1]
                segmenter.train(was_training)
        self.in_channels = int(in_channels)
        self.head = OodHead(self.in_channels, mid_channels)
        self.num_classes = segmenter.num_classes + 2

    def train(self, mode: bool = True):
        super().train(mode)
        self.segmenter.eval()  # frozen: its batch norm statistics never change
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.segmenter.forward_features(x)
            logits = self.segmenter.forward_head(features)
        ood = self.head(features)
        if ood.shape[2:] != logits.shape[2:]:
            ood = F.interpolate(ood, size=logits.shape[2:], mode='bilinear',
                                align_corners=False)
        return torch.cat([logits, ood], dim=1)


def anomaly_score(logits: torch.Tensor, num_inlier: int, *, lam: float = LAMBDA,
                  estimators: Sequence[str] = ESTIMATORS) -> torch.Tensor:
    """Eq. 9 from the combined output ``(B,C+2,H,W)``: ``(B,H,W)``, higher = anomalous."""
    h = logits[:, -2:].float()
    score = torch.zeros_like(h[:, 0])
    if 'tae' in estimators:
        score = score + F.log_softmax(h, dim=1)[:, 1]
    if 'tore' in estimators:
        jem = free_energy(logits[:, :num_inlier])
        score = score + (lam if 'tae' in estimators else 1.0) * (h[:, 1] + jem)
    return score


@register_scorer('sleeg')
class SleegScore(Scorer):
    """SLEEG's score (eq. 9) on a SLEEG checkpoint's outputs."""

    method = 'sleeg'
    by_rows = True

    def __init__(self, *, num_inlier_classes: Optional[int] = None, lam: float = LAMBDA,
                 estimators: str = 'tae+tore'):
        super().__init__(num_inlier_classes=num_inlier_classes)
        self.lam = lam
        self.estimators = parse_estimators(estimators)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        if self.num_inlier_classes is None or logits.shape[1] < self.num_inlier_classes + 2:
            raise ConfigError("scorer 'sleeg' needs a SLEEG checkpoint (segmentation outputs "
                              "and two OoD-head outputs); train one with anomseg train-anomaly "
                              "--method sleeg")
        return anomaly_score(logits, self.num_inlier_classes, lam=self.lam,
                             estimators=self.estimators)


def parse_estimators(text: str) -> tuple:
    names = tuple(n for n in str(text).replace(',', '+').split('+') if n)
    if not names or any(n not in ESTIMATORS for n in names):
        raise ConfigError(f'estimators are tae, tore or tae+tore, got {text!r}')
    return names


# ------------------------------------------------------------------ losses (eqs. 5 and 8)

def tae_loss(ood_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: cross-entropy of the head's two outputs against ``target`` (0 normal, 1 anomaly,
    255 ignored). The paper writes two expectations, one per set: they are averaged apart."""
    loss = ood_logits.new_zeros(())
    for value in (0, 1):
        pixels = target == value
        if pixels.any():
            log_p = F.log_softmax(ood_logits.float(), dim=1)[:, value]
            loss = loss - log_p[pixels].mean()
    return loss


def tore_loss(ood_logits: torch.Tensor, jem: torch.Tensor, target: torch.Tensor, *,
              gamma: float = GAMMA, dynamic: bool = True) -> torch.Tensor:
    """Eq. 8 per image, averaged over the images with both sets: ``{mean_id h1 - mean_ood h1 +
    gamma_hat}_+``; ``dynamic=False`` uses ``gamma`` alone (the static margin of Table 4)."""
    h1 = ood_logits[:, 1].float()
    losses = []
    for i in range(h1.shape[0]):
        normal, anomaly = target[i] == 0, target[i] == 1
        if not normal.any() or not anomaly.any():
            continue
        margin = gamma
        if dynamic:
            margin = margin + jem[i][normal].mean() - jem[i][anomaly].mean()
        losses.append(F.relu(h1[i][normal].mean() - h1[i][anomaly].mean() + margin))
    return torch.stack(losses).mean() if losses else h1.new_zeros(())


# ------------------------------------------------------------------ refinement (eqs. 10-11)

def refinement_threshold(scores: torch.Tensor, *, levels: int = 64) -> float:
    """Eq. 11: the threshold between the min and max of ``scores`` (1-D) that minimises the sum
    of the (unbiased) variances of the two groups it makes, scanned on ``levels`` values; the
    groups' sums come from cumulative sums of the sorted scores, so the scan is one pass."""
    s = scores.double().flatten().sort().values
    low, high = s[0].item(), s[-1].item()
    if not high > low:
        return low
    etas = torch.linspace(low, high, levels + 2, dtype=torch.float64)[1:-1]
    below = torch.searchsorted(s, etas)                  # pixels under each threshold
    zero = s.new_zeros(1)
    c1, c2 = torch.cat([zero, s.cumsum(0)]), torch.cat([zero, (s * s).cumsum(0)])
    n = len(s)

    def variance(count, total, squares):
        return (squares - total * total / count.clamp_min(1)) / (count - 1).clamp_min(1)

    n_above = n - below
    cost = variance(below, c1[below], c2[below]) + \
        variance(n_above, c1[n] - c1[below], c2[n] - c2[below])
    cost[(below < 2) | (n_above < 2)] = float('inf')
    best = int(torch.argmin(cost))
    return low if not torch.isfinite(cost[best]) else float(etas[best])


def refine_target(pasted: torch.Tensor, scores: torch.Tensor, *, refine: bool = True
                  ) -> torch.Tensor:
    """Eq. 10 per image: pixels outside the pasted area are normal (0); inside it those scoring
    at least the refinement threshold are anomalies (1) and the rest ignored (255)."""
    target = torch.zeros_like(pasted, dtype=torch.long)
    for i in range(pasted.shape[0]):
        inside = pasted[i]
        if not inside.any():
            continue
        if refine:
            eta = refinement_threshold(scores[i][inside])
            keep = inside & (scores[i] >= eta)
            target[i][inside] = IGNORE
            target[i][keep] = 1
        else:
            target[i][inside] = 1
    return target


# ------------------------------------------------------------------ self-supervised patches

class PatchLibrary:
    """Random crops of inlier images, refreshed every iteration, pasted as pseudo-anomalies."""

    def __init__(self, *, capacity: int = 64, num_patches: int = NUM_PATCHES,
                 shape: str = 'convex', size_fraction=(0.06, 0.2), random_points: int = 6,
                 generator: Optional[torch.Generator] = None):
        if shape not in PATCH_SHAPES:
            raise ConfigError(f'patch shape is convex or square, got {shape!r}')
        self.capacity, self.num_patches, self.shape = capacity, num_patches, shape
        self.size_fraction, self.random_points = size_fraction, random_points
        self.generator = generator or torch.Generator().manual_seed(0)
        self.patches: List[torch.Tensor] = []

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=self.generator).item()

    def _int(self, high: int) -> int:
        return int(torch.randint(max(high, 1), (), generator=self.generator))

    def update(self, images: torch.Tensor) -> None:
        """Add one random crop of each image (``(B,3,H,W)``, normalised) to the library."""
        _, _, height, width = images.shape
        for image in images:
            side = int(self._uniform(*self.size_fraction) * width)
            aspect = self._uniform(0.6, 1.6)
            h, w = max(4, min(height, side)), max(4, min(width, int(side * aspect)))
            top, left = self._int(height - h + 1), self._int(width - w + 1)
            self.patches.append(image[:, top:top + h, left:left + w].detach().clone())
        self.patches = self.patches[-self.capacity:]

    def patch_mask(self, patch: torch.Tensor) -> np.ndarray:
        """The patch's shape: its full square, or the convex hull of its Harris corners and
        ``random_points`` random points (paper 003 section 3.2)."""
        _, h, w = patch.shape
        if self.shape == 'square':
            return np.ones((h, w), bool)
        gray = patch.float().mean(dim=0).cpu().numpy().astype(np.float32)
        response = cv2.cornerHarris(gray, 2, 3, 0.04)
        ys, xs = np.nonzero(response > 0.01 * response.max()) if response.max() > 0 else ([], [])
        order = torch.randperm(len(xs), generator=self.generator)[:20].numpy()
        points = [(int(xs[k]), int(ys[k])) for k in order]
        points += [(self._int(w), self._int(h)) for _ in range(self.random_points)]
        hull = cv2.convexHull(np.array(points, np.int32).reshape(-1, 1, 2))
        mask = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(mask, hull, 1)
        return mask.astype(bool)

    def paste(self, images: torch.Tensor) -> torch.Tensor:
        """Paste ``num_patches`` library patches into each image (in place) at random places;
        returns the pasted-area mask ``(B,H,W)`` bool."""
        batch, _, height, width = images.shape
        pasted = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
        if not self.patches:
            return pasted
        for i in range(batch):
            for _ in range(self.num_patches):
                patch = self.patches[self._int(len(self.patches))]
                _, h, w = patch.shape
                h, w = min(h, height), min(w, width)
                patch = patch[:, :h, :w]
                mask = torch.from_numpy(self.patch_mask(patch)).to(images.device)
                top, left = self._int(height - h + 1), self._int(width - w + 1)
                region = images[i, :, top:top + h, left:left + w]
                region[:, mask] = patch.to(images.device)[:, mask]
                pasted[i, top:top + h, left:left + w] |= mask
        return pasted


def sleeg_losses(outputs: torch.Tensor, pasted: torch.Tensor, num_inlier: int, *,
                 estimators: Sequence[str] = ESTIMATORS, refine: bool = True,
                 warmup: bool = False, lam: float = LAMBDA, gamma: float = GAMMA,
                 dynamic_margin: bool = True) -> Dict[str, torch.Tensor]:
    """The losses of one batch: ``outputs`` of a ``SleegModel`` on images with patches pasted
    where ``pasted`` is true. The refinement uses the JEM during ``warmup``."""
    jem = free_energy(outputs[:, :num_inlier]).detach()
    with torch.no_grad():
        guide = jem if warmup else anomaly_score(outputs, num_inlier, lam=lam,
                                                 estimators=estimators)
    target = refine_target(pasted, guide, refine=refine)
    ood = outputs[:, -2:]
    zero = outputs.new_zeros(())
    return {'tae': tae_loss(ood, target) if 'tae' in estimators else zero,
            'tore': tore_loss(ood, jem, target, gamma=gamma, dynamic=dynamic_margin)
            if 'tore' in estimators else zero,
            'anomaly_pixels': (target == 1).sum().float(), 'target': target}


@dataclasses.dataclass
class SleegOptions:
    """SLEEG's own training options (the run's are ``AnomalyTrainConfig``'s)."""

    estimators: str = option('tae+tore', 'ablation: tae, tore or tae+tore (default)')
    patch_shape: str = option('convex', 'shape of the self-pasted patches', choices=PATCH_SHAPES)
    refinement: bool = option(True, 'the refinement of the pasted pixels by the JEM score '
                              '(off, an ablation: every pasted pixel is an anomaly)')
    static_margin: bool = option(False, 'ablation: margin gamma without the JEM terms (Table 4)')
    num_patches: int = option(NUM_PATCHES, 'patches kept in the library (default %(default)s)')
    margin: float = option(GAMMA, 'the margin gamma of eq. 8 (default %(default)s)')
    lam: float = option(LAMBDA, 'weight lambda of the TORE estimator (default %(default)s)')
    warmup: float = option(0.15, 'share of the iterations that refine with the JEM score '
                           '(paper: 6,000 of 40,000; default %(default)s)')
    head_channels: int = option(32, 'width of the OoD head (default %(default)s)')

    def check(self) -> None:
        parse_estimators(self.estimators)
        if not 0.0 <= self.warmup <= 1.0:
            raise ConfigError(f'`warmup` is a share of the iterations, 0 to 1; got {self.warmup}')


@register_method('sleeg')
class Sleeg(Method):
    """SLEEG as a method: an OoD head on the frozen segmentation model's decoder features,
    trained on patches of the inlier images pasted back (no outlier data); scored by
    ``sleeg`` with the lambda and estimators it was trained with."""

    scorer = 'sleeg'
    paper = '003'
    default_lr = 1e-3  # for the new head; paper 003 does not state one
    base_num_classes = None  # builds on every output of the segmentation model
    extra_outputs = 2  # the OoD head's two outputs

    def build_model(self, info, build_base) -> nn.Module:
        base = dataclasses.replace(info, method='', method_params={},
                                   num_classes=info.num_classes - 2)
        return SleegModel(build_base(base), **info.method_params.get('head', {}))

    Options = SleegOptions

    def check(self, config, options) -> None:
        options.check()

    def prepare(self, base, base_info, config, options):
        for parameter in base.parameters():
            parameter.requires_grad_(False)
        model = SleegModel(base, mid_channels=options.head_channels)  # or refuses it, saying why
        head = {'in_channels': model.in_channels, 'mid_channels': options.head_channels}
        info = dataclasses.replace(base_info, num_classes=base_info.num_classes + 2,
                                   method=self.name, source='',
                                   method_params={'lam': options.lam,
                                                  'estimators': options.estimators,
                                                  'head': head})
        return model, info, sum(p.numel() for p in model.head.parameters())

    def training_state(self, config, options, info, generator):
        total = config.epochs * config.iters_per_epoch
        return {'library': PatchLibrary(num_patches=options.num_patches,
                                        shape=options.patch_shape, generator=generator),
                'estimators': parse_estimators(options.estimators),
                'num_inlier': info.num_inlier_classes, 'refine': options.refinement,
                'warmup_iters': round(options.warmup * total), 'lam': options.lam,
                'gamma': options.margin, 'dynamic_margin': not options.static_margin}

    def train_step(self, model, images, labels, state, step):
        library = state['library']
        library.update(images)
        pasted = library.paste(images)
        terms = sleeg_losses(model(images), pasted, state['num_inlier'],
                             estimators=state['estimators'], refine=state['refine'],
                             warmup=step < state['warmup_iters'], lam=state['lam'],
                             gamma=state['gamma'], dynamic_margin=state['dynamic_margin'])
        terms.pop('target')
        return terms['tae'] + terms['tore'], terms
