"""What a training run is told: ``TrainConfig``, the library's way in to segmentation
training (``anomseg_ros.training.train(config)``; ``anomseg train`` and the study build one),
and ``AnomalyTrainConfig``, a learned anomaly score's run (``train_anomaly(config,
options)``)."""
import dataclasses
from typing import Dict, Optional, Tuple

from anomseg_ros.errors import ConfigError
from anomseg_ros.methods.outliers import PASTE_SCALE, parse_scale
from anomseg_ros.options import option
from anomseg_ros.pipeline import DEVICES
from anomseg_ros.sizes import format_size, parse_size, parse_vector
from anomseg_ros.training.engine import ERFNET_LR

AMP_CHOICES = ('auto', 'off', 'bf16', 'fp16')


@dataclasses.dataclass
class TrainConfig:
    """A training run: ERFNet's recipe (Adam, poly learning rate, class-weighted loss) unless
    told otherwise. Sizes are (height, width); ``from_options`` also reads "WxH" strings."""

    data: str                                     # Cityscapes-layout root
    out: str                                      # folder for last.pt and best.pt
    backbone: str = 'erfnet'
    loss: str = 'ce'                              # "0.5*logitnorm+ce", "eiml+focal", ...
    focal_gamma: float = 2.0
    logitnorm_tau: float = 0.04
    entropic_scale: float = 10.0
    void: bool = False                            # void pixels as a 20th class
    pretrained_backbone: Optional[str] = None     # resnet50: self-supervised weights
    ssl_format: str = 'auto'
    freeze_backbone: bool = False
    epochs: int = 150
    batch_size: int = 6                           # per process
    input_size: Optional[Tuple[int, int]] = None  # default 512x256 or the checkpoint's
    crop_size: Optional[Tuple[int, int]] = None   # default: the input size
    class_uniform: float = 0.5
    repeat_threshold: float = 0.0                 # > 0: repeat-factor sampling of images
    lr: float = ERFNET_LR
    class_weights: bool = True
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    workers: int = 2
    cache: Optional[str] = None
    resume: Optional[str] = None
    init_weights: Optional[str] = None
    max_iters_per_epoch: Optional[int] = None
    val_limit: Optional[int] = None
    time_budget_min: Optional[float] = None
    device: str = 'auto'
    amp: str = 'auto'
    sync_bn: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f'amp must be one of {", ".join(AMP_CHOICES)}, got {self.amp!r}')

    @classmethod
    def from_options(cls, options: Dict[str, object]) -> 'TrainConfig':
        """A config from plain values (a study file's row, an argparse namespace's vars):
        sizes as "WxH", vectors as "r,g,b"; unknown keys are refused with the known ones."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f'unknown training options {unknown}; known: '
                              f'{", ".join(sorted(known))}')
        values = dict(options)
        for key in ('input_size', 'crop_size'):
            if values.get(key) not in (None, ''):
                values[key] = parse_size(values[key])
        for key in ('mean', 'std'):
            if values.get(key) not in (None, ''):
                values[key] = parse_vector(values[key])
        return cls(**{k: (None if v == '' else v) for k, v in values.items()})

    def options(self) -> Dict[str, object]:
        """Plain values (sizes "WxH", vectors "a,b,c", "" for None), as checkpoints keep them
        and ``from_options`` reads them back."""
        plain = {}
        for key, value in dataclasses.asdict(self).items():
            if key in ('input_size', 'crop_size') and value is not None:
                value = format_size(value)
            elif isinstance(value, (tuple, list)):
                value = ','.join(str(v) for v in value)
            plain[key] = '' if value is None else value
        return plain

    def argv(self) -> list:
        """The ``anomseg train`` command line of this config (for logs)."""
        defaults = TrainConfig(data=self.data, out=self.out)
        argv = ['--data', self.data, '--out', self.out]
        for key, value in self.options().items():
            if key in ('data', 'out') or getattr(defaults, key) == getattr(self, key):
                continue
            flag = '--' + key.replace('_', '-')
            if isinstance(value, bool):
                argv.append(flag if value else f'--no-{key.replace("_", "-")}')
            else:
                argv += [flag, str(value)]
        return argv


@dataclasses.dataclass
class AnomalyTrainConfig:
    """A learned anomaly score's training run (``train_anomaly(config, options)``): what every
    method shares. What a method has of its own is its ``Options`` (``Method.Options``)."""

    method: str = option(help='the learned method (anomseg_ros.methods)')
    checkpoint: str = option(help='the trained segmentation model to build on', metavar='CKPT')
    data: str = option(help='inlier training images: a Cityscapes-layout root', metavar='ROOT')
    out: str = option(help='folder of last.pt (created)', metavar='DIR')
    epochs: int = option(20, 'epochs (default %(default)s, as PEBAL); SynBoost: of its '
                         'dissimilarity network')
    iters_per_epoch: int = option(200, 'optimisation steps per epoch (default %(default)s)')
    batch_size: int = option(8, 'images per step (default %(default)s)')
    lr: Optional[float] = option(None, 'Adam learning rate (default: the method\'s: PEBAL '
                                 '1e-5 as its paper; SLEEG 1e-3 for the new head, which paper '
                                 '003 does not state; SynBoost 1e-4 for the dissimilarity '
                                 'network)')
    input_size: Optional[Tuple[int, int]] = option(
        None, 'the scale images are brought to (default: the checkpoint\'s)', metavar='WxH',
        parse=parse_size)
    crop_size: Optional[Tuple[int, int]] = option(None, 'training crop (default: the input '
                                                  'size)', metavar='WxH', parse=parse_size)
    workers: int = option(2, 'data loading processes (default %(default)s)')
    amp: str = option('auto', 'mixed precision of the forward pass: auto (default) = bf16 '
                      'autocast on CPUs with AMX or AVX512-BF16, fp16 with gradient scaling on '
                      'CUDA, else float32; off = float32 (the losses are computed in float32 '
                      'either way)', choices=AMP_CHOICES)
    cache: Optional[str] = option(None, 'decode each training image once into DIR and read it '
                                  'back from there (as anomseg train --cache; the same folder '
                                  'serves both)', metavar='DIR')
    device: str = option('auto', 'auto (default), cpu or cuda', choices=DEVICES)
    seed: int = option(0, 'random seed (default %(default)s)')
    resume: bool = option(False, 'continue OUT/last.pt')
    stage: str = option('all', 'all (default), or one stage of the method alone on '
                        'OUT/last.pt: synboost has generator, dissimilarity and ensemble; '
                        'pebal and sleeg one, train')
    time_budget_min: Optional[float] = option(None, 'stop after the epoch that passes this '
                                              'many minutes (continue with `resume`)')
    outliers: Optional[str] = option(None, 'outlier cut-outs to paste (PEBAL\'s AnomalyMix, '
                                     'SynBoost\'s void source): RGBA images, or images/ + '
                                     'masks/', metavar='DIR')
    paste_scale: Tuple[float, float] = option(
        PASTE_SCALE, 'a pasted outlier\'s longer side as a share of the image width, drawn '
        'uniformly (AnomalyMix, SynBoost\'s void source and adapt\'s pasted track; default '
        '%g,%g)' % PASTE_SCALE, metavar='MIN,MAX', parse=parse_scale)

    def check(self) -> None:
        """Refuse values no method can train with, naming the field."""
        for name in ('epochs', 'batch_size', 'iters_per_epoch'):
            if getattr(self, name) <= 0:
                raise ConfigError(f'`{name}` must be positive, got {getattr(self, name)}')
        for name in ('method', 'checkpoint', 'data', 'out'):
            if not getattr(self, name):
                raise ConfigError(f'a training run needs `{name}`')
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f'`amp` must be one of {", ".join(AMP_CHOICES)}, got {self.amp!r}')
        self.paste_scale = parse_scale(self.paste_scale)
