"""What a segmentation training run is told: ``TrainConfig``, the library's way in
(``anomseg_ros.training.train(config)``); ``anomseg train`` and the study build one."""
import dataclasses
from typing import Dict, Optional, Tuple

from anomseg_ros.errors import ConfigError
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
