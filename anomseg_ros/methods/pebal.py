"""PEBAL: Pixel-wise Energy-Biased Abstention Learning (Tian et al., ECCV 2022; paper 004).

The segmentation model gets an abstention output Y+1 after its Y classes; only its last block
is fine-tuned, with

    loss = l_pal + lambda * (l_ebm_in or l_ebm_out) + l_reg                     (eq. 2)

- ``l_pal = -log(p(y) + p(Y+1) / a)`` per pixel (eq. 3), ``p`` the softmax over all Y+1
  outputs, ``y`` the label (Y+1 for AnomalyMix pixels), with the pixel-wise penalty
  ``a = (-E)^2`` (eq. 5) from the inlier free energy ``E = -logsumexp(inlier logits)`` (eq. 4);
- ``l_ebm_in = relu(E - m_in)^2`` on inlier pixels and ``l_ebm_out = relu(m_out - E)^2`` on
  outlier pixels (eqs. 6-7; m_in = -12, m_out = -6), averaged over their pixels;
- ``l_reg = beta1 * sum |E - E_neighbour| + beta2 * sum |E|`` over the pixels of each image,
  horizontal and vertical neighbours (eq. 8; beta1 = 5e-4, beta2 = 3e-6), averaged over images.
  ``reg_form="code"`` is the authors' released code instead: 3e-6 times half the sum of the
  squared neighbour differences over the batch, plus 5e-4 times the L2 norm of the outlier
  pixels' energies (the two weights swapped, squares for absolute values, sparsity on outliers
  only). At our crop sizes the paper's form outweighs every other term.

The paper averages l_pal over pixels as its code does; the margins and lambda = 0.1 are the
paper's. The margins were chosen for Cityscapes models whose inlier energies lie far below -12;
``margins="auto"`` takes them from the model being fine-tuned instead: m_in at the median
free energy of the inlier pixels of its first batch, m_out the paper's 6 above it
(``margins_from_energies``). At inference the score is the free energy smoothed with a
Gaussian kernel (7x7, sigma 1, following the paper's reference [19]), and the segmentation
comes from the inlier outputs alone.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from anomseg_ros.backbones import backbone_class, with_num_classes
from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import NUM_CITYSCAPES_CLASSES, VOID_LABEL
from anomseg_ros.methods.base import Method, register_method
from anomseg_ros.methods.outliers import load_outliers, parse_scale, paste_outliers
from anomseg_ros.options import option
from anomseg_ros.scoring.base import Scorer
from anomseg_ros.scoring.registry import register_scorer

M_IN, M_OUT = -12.0, -6.0
AUTO_QUANTILE = 0.5  # margins="auto": m_in at this quantile of the inlier free energies
LAMBDA = 0.1
BETA1, BETA2 = 5e-4, 3e-6
CODE_SMOOTH, CODE_SPARSE = 3e-6, 5e-4   # the released code's weights (see reg_form)
REG_FORMS = ('paper', 'code')
KERNEL_SIZE, SIGMA = 7, 1.0  # test-time Gaussian smoothing of the score (the paper's [19])


def free_energy(inlier_logits: torch.Tensor) -> torch.Tensor:
    """``E = -logsumexp`` over the class axis: ``(B,Y,H,W)`` -> ``(B,H,W)`` (eq. 4)."""
    return -torch.logsumexp(inlier_logits.float(), dim=1)


def gaussian_check(kernel_size: int, sigma: float) -> None:
    """Refuse a smoothing kernel ``gaussian_smooth`` cannot make."""
    if kernel_size < 1 or kernel_size % 2 == 0 or sigma <= 0:
        raise ConfigError(f'the smoothing kernel needs an odd size >= 1 and sigma > 0, got '
                          f'{kernel_size} and {sigma}')


def gaussian_smooth(maps: torch.Tensor, kernel_size: int = KERNEL_SIZE,
                    sigma: float = SIGMA) -> torch.Tensor:
    """``(B,H,W)`` maps smoothed with a normalised Gaussian, edges replicated."""
    if kernel_size <= 1:
        return maps
    half = kernel_size // 2
    x = torch.arange(kernel_size, dtype=torch.float32, device=maps.device) - half
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    out = F.pad(maps[:, None].float(), (half, half, half, half), mode='replicate')
    out = F.conv2d(out, g.view(1, 1, 1, -1))
    return F.conv2d(out, g.view(1, 1, -1, 1))[:, 0]


def parse_margins(text: str) -> Optional[Tuple[float, float]]:
    """``--margins``: ``paper`` (-12, -6), ``auto`` (None: from the model, see
    ``margins_from_energies``) or ``M_IN,M_OUT`` with m_in < m_out."""
    if text == 'paper':
        return M_IN, M_OUT
    if text == 'auto':
        return None
    try:
        m_in, m_out = (float(part) for part in text.split(','))
    except ValueError:
        raise ConfigError(f'margins are paper, auto or M_IN,M_OUT (two numbers), got '
                          f'{text!r}') from None
    if not m_in < m_out:
        raise ConfigError(f'the inlier margin must lie below the outlier margin (eqs. 6-7), got '
                          f'm_in {m_in:g} and m_out {m_out:g}')
    return m_in, m_out


def margins_from_energies(inlier_energies: torch.Tensor) -> Tuple[float, float]:
    """PEBAL's margins placed on this model's energy scale: m_in at the median inlier free
    energy, m_out the paper's gap (6) above it."""
    if inlier_energies.numel() == 0:
        raise ConfigError('the first batch holds no inlier pixels to place the margins on; '
                          'give `margins` M_IN,M_OUT')
    m_in = float(torch.quantile(inlier_energies.float().flatten()[:1_000_000], AUTO_QUANTILE))
    return m_in, m_in + (M_OUT - M_IN)


class PebalLoss(nn.Module):
    """Eq. 2 over logits ``(B,Y+1,H,W)`` and labels ``(B,H,W)``: 0..Y-1 inlier, ``Y`` outlier
    (the abstention class), ``ignore_index`` ignored. ``fixed_penalty`` replaces ``a = E^2`` by a
    constant (the ablation of paper 004 Table 4); ``regulariser=False`` drops eq. 8."""

    def __init__(self, num_inlier: int, *, lam: float = LAMBDA, m_in: float = M_IN,
                 m_out: float = M_OUT, beta1: float = BETA1, beta2: float = BETA2,
                 fixed_penalty: Optional[float] = None, regulariser: bool = True,
                 reg_form: str = 'paper', ignore_index: int = VOID_LABEL):
        super().__init__()
        if fixed_penalty is not None and not fixed_penalty > 0:
            raise ConfigError(f'the fixed abstention penalty must be positive, got '
                              f'{fixed_penalty}')
        self.num_inlier, self.lam, self.m_in, self.m_out = num_inlier, lam, m_in, m_out
        self.beta1, self.beta2 = beta1, beta2
        if reg_form not in REG_FORMS:
            raise ConfigError(f'the regulariser form is one of {", ".join(REG_FORMS)}, got '
                              f'{reg_form!r}')
        self.fixed_penalty, self.regulariser, self.reg_form = fixed_penalty, regulariser, reg_form
        self.ignore_index = ignore_index

    def terms(self, logits: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Each term of eq. 2, for tests and logs."""
        logits = logits.float()
        energy = free_energy(logits[:, :self.num_inlier])
        probs = F.softmax(logits, dim=1)
        valid = labels != self.ignore_index
        outlier = valid & (labels == self.num_inlier)
        inlier = valid & ~outlier
        target = labels.masked_fill(~valid, 0)
        penalty = energy ** 2 if self.fixed_penalty is None else \
            torch.full_like(energy, self.fixed_penalty)
        p_target = probs.gather(1, target[:, None])[:, 0]
        p_abstain = probs[:, self.num_inlier]
        pal = -torch.log((p_target + p_abstain / penalty.clamp_min(1e-12)).clamp_min(1e-12))
        zero = logits.new_zeros(())
        terms = {'pal': pal[valid].mean() if valid.any() else zero,
                 'ebm_in': (F.relu(energy - self.m_in) ** 2)[inlier].mean() if inlier.any()
                 else zero,
                 'ebm_out': (F.relu(self.m_out - energy) ** 2)[outlier].mean() if outlier.any()
                 else zero}
        dy, dx = energy[:, 1:, :] - energy[:, :-1, :], energy[:, :, 1:] - energy[:, :, :-1]
        if self.regulariser and self.reg_form == 'paper':
            smooth = dy.abs().sum(dim=(1, 2)) + dx.abs().sum(dim=(1, 2))
            sparse = energy.abs().sum(dim=(1, 2))
            terms['reg'] = (self.beta1 * smooth + self.beta2 * sparse).mean()
        elif self.regulariser:
            smooth = ((dy ** 2).sum() + (dx ** 2).sum()) / 2
            sparse = torch.linalg.vector_norm(energy[outlier]) if outlier.any() else zero
            terms['reg'] = CODE_SMOOTH * smooth + CODE_SPARSE * sparse
        else:
            terms['reg'] = zero
        return terms

    def loss_and_terms(self, logits: torch.Tensor,
                       labels: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Eq. 2 and the terms it sums, from one computation (training logs both)."""
        t = self.terms(logits, labels)
        return t['pal'] + self.lam * (t['ebm_in'] + t['ebm_out']) + t['reg'], t

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss_and_terms(logits, labels)[0]


def add_abstention_output(model: nn.Module, backbone: str) -> nn.Module:
    """``model`` rebuilt with one more output (the abstention class Y+1) after its classes,
    keeping every trained weight; the new output starts from small weights and a low bias."""
    num_classes = model.num_classes
    extended, changed = with_num_classes(model, backbone, num_classes + 1)
    parameters = dict(extended.named_parameters())
    with torch.no_grad():
        for key, axis in changed:
            new = parameters[key].narrow(axis, num_classes, 1)
            if new.dim() > 1:
                new.mul_(0.1)
            else:
                new.fill_(parameters[key].narrow(axis, 0, num_classes).min() - 1.0)
    return extended


def freeze_all_but_last_block(model: nn.Module, backbone: str) -> int:
    """Freeze every parameter outside the "final classification block" PEBAL fine-tunes (the
    ``last_block`` the backbone declares); returns how many train."""
    prefixes = backbone_class(backbone).last_block
    if not prefixes:
        raise ConfigError(f'backbone {backbone!r} declares no last block for PEBAL to fine-tune')
    trainable = 0
    for name, parameter in model.named_parameters():
        keep = name.startswith(prefixes)
        parameter.requires_grad_(keep)
        trainable += parameter.numel() if keep else 0
    return trainable


@register_scorer('pebal')
class PebalEnergy(Scorer):
    """PEBAL's score: the inlier free energy (eq. 4) smoothed with a Gaussian kernel."""

    method = 'pebal'

    def __init__(self, *, num_inlier_classes: Optional[int] = None,
                 kernel_size: int = KERNEL_SIZE, sigma: float = SIGMA):
        super().__init__(num_inlier_classes=num_inlier_classes)
        gaussian_check(kernel_size, sigma)
        self.kernel_size, self.sigma = kernel_size, sigma

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        # the energy pixel by pixel (by rows where faster), the smoothing on the whole map
        energy = self.pixelwise(lambda rows: free_energy(self.inlier_logits(rows)), logits)
        return gaussian_smooth(energy, self.kernel_size, self.sigma)


@dataclasses.dataclass
class PebalOptions:
    """PEBAL's own training options (the run's are ``AnomalyTrainConfig``'s)."""

    mix_probability: float = option(0.5, 'share of training images that get an outlier pasted '
                                    '(AnomalyMix; default %(default)s)')
    pebal_lambda: float = option(LAMBDA, 'weight of the abstention loss (default %(default)s)')
    margins: str = option('paper', 'energy margins of eqs. 6-7: the paper\'s -12,-6 (default; '
                          'set for models with inlier energies far below -12), auto (m_in at '
                          'the median inlier energy of this model, m_out 6 above), or two '
                          'numbers', metavar='paper|auto|M_IN,M_OUT')
    fixed_penalty: Optional[float] = option(None, 'ablation: a constant abstention penalty '
                                            'instead of (-E)^2', metavar='A')
    regulariser: bool = option(True, 'the smoothness / sparsity term of eq. 8 (off: an '
                               'ablation)')
    reg_form: str = option('paper', 'eq. 8 as printed (default), or as the authors\' code '
                           'computes it', choices=REG_FORMS)
    kernel_size: int = option(KERNEL_SIZE, 'test-time smoothing kernel (default %(default)s)')
    sigma: float = option(SIGMA, 'test-time smoothing sigma (default %(default)s)')

    def check(self) -> None:
        parse_margins(self.margins)
        if not 0.0 <= self.mix_probability <= 1.0:
            raise ConfigError(f'`mix_probability` is a share of images, 0 to 1; got '
                              f'{self.mix_probability}')
        gaussian_check(self.kernel_size, self.sigma)


@register_method('pebal')
class Pebal(Method):
    """PEBAL as a method: an abstention output Y+1 on the segmentation model (void output
    dropped), its last block fine-tuned with eq. 2 on AnomalyMix images; scored by ``pebal``
    with the smoothing it was trained for."""

    scorer = 'pebal'
    paper = '004'
    default_lr = 1e-5           # the paper's
    needs_outliers = True
    base_num_classes = NUM_CITYSCAPES_CLASSES  # the inlier outputs it builds on
    extra_outputs = 1  # the abstention output

    def build_model(self, info, build_base) -> nn.Module:
        # the backbone itself with Y+1 outputs
        return build_base(dataclasses.replace(info, method='', method_params={}))

    Options = PebalOptions

    def check(self, config, options) -> None:
        if not config.outliers:
            raise ConfigError('PEBAL trains on outliers pasted into inlier images (AnomalyMix): '
                              'give `outliers`, a folder of RGBA cut-outs (e.g. anomseg synth\'s '
                              'outliers/)')
        options.check()

    def prepare(self, base, base_info, config, options):
        model = add_abstention_output(base, base_info.backbone)
        trainable = freeze_all_but_last_block(model, base_info.backbone)
        info = dataclasses.replace(
            base_info, num_classes=self.base_num_classes + 1,
            class_names=list(base_info.class_names[:self.base_num_classes]),
            void_channel=None, head='linear', method=self.name,
            method_params={'kernel_size': options.kernel_size, 'sigma': options.sigma},
            temperature=1.0, source='')
        return model, info, trainable

    def training_state(self, config, options, info, generator):
        margins = parse_margins(options.margins)
        if margins is None and 'm_in' in info.method_params:  # resumed: the margins it chose
            margins = info.method_params['m_in'], info.method_params['m_out']
        criterion = PebalLoss(self.base_num_classes, lam=options.pebal_lambda,
                              fixed_penalty=options.fixed_penalty,
                              regulariser=options.regulariser, reg_form=options.reg_form)
        if margins is not None:
            criterion.m_in, criterion.m_out = margins
            info.method_params.update(m_in=margins[0], m_out=margins[1])
        return {'criterion': criterion, 'margins_from_model': margins is None,
                'method_params': info.method_params,
                'outliers': load_outliers(config.outliers), 'generator': generator,
                'probability': options.mix_probability, 'scale': parse_scale(config.paste_scale),
                'mean': torch.tensor(info.mean).view(3, 1, 1),
                'std': torch.tensor(info.std).view(3, 1, 1)}

    def train_step(self, model, images, labels, state, step):
        if state['margins_from_model']:  # --margins auto: once, on the clean first batch
            with torch.no_grad():
                energy = free_energy(model(images)[:, :self.base_num_classes])
            inlier = (labels != VOID_LABEL) & (labels < self.base_num_classes)
            criterion = state['criterion']
            criterion.m_in, criterion.m_out = margins_from_energies(energy[inlier])
            state['method_params'].update(m_in=criterion.m_in, m_out=criterion.m_out)
            state['margins_from_model'] = False
            print(f'margins from the model: m_in {criterion.m_in:.2f}, m_out '
                  f'{criterion.m_out:.2f} (the paper: {M_IN:g}, {M_OUT:g})', flush=True)
        paste_outliers(images, labels, state['outliers'], label=self.base_num_classes,
                       mean=state['mean'], std=state['std'], generator=state['generator'],
                       probability=state['probability'], scale=state['scale'])
        return state['criterion'].loss_and_terms(model(images), labels)
