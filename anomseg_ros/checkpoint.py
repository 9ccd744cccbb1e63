"""Loading and saving weights: the public ERFNet state dict and the project's own checkpoints.

The project's checkpoints are dicts with a ``model_state`` and the metadata needed to rebuild the
model (``ModelInfo``); a plain state dict (such as ``erfnet_pretrained.pth``, keys prefixed
``module.``) is taken as a Cityscapes model with the public ERFNet conventions.
"""
import dataclasses
import os
from typing import List, Optional, Tuple

import torch
from torch import nn

from anomseg_ros.backbones import (backbone_class, create_backbone, list_backbones,
                                   pretrained_cfg)
from anomseg_ros.backbones.heads import HEADS, WithIsoMaxPlus
from anomseg_ros.errors import CheckpointError, first_line
from anomseg_ros.labels import CITYSCAPES_CLASSES
from anomseg_ros.methods import get_method

CHECKPOINT_FORMAT = 'anomseg_ros.checkpoint/1'


@dataclasses.dataclass
class ModelInfo:
    """What is needed to rebuild a model and feed it: everything but the weights."""

    backbone: str = 'erfnet'
    num_classes: int = 20
    class_names: List[str] = dataclasses.field(default_factory=lambda: list(CITYSCAPES_CLASSES))
    void_channel: Optional[int] = 19
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    input_size_hw: Tuple[int, int] = (512, 1024)
    temperature: float = 1.0
    head: str = 'linear'    # or 'isomax+': distance-based logits (trained with the EIML loss)
    # a learned anomaly method on top of the segmentation outputs ('pebal': an abstention output
    # after the classes; 'sleeg': two OoD-head outputs last; 'synboost': four maps last) and
    # what its scorer needs
    method: str = ''
    method_params: dict = dataclasses.field(default_factory=dict)
    # calibrated obstacle thresholds by scorer (anomseg calibrate --thresholds), for
    # threshold "auto"
    thresholds: dict = dataclasses.field(default_factory=dict)
    # per-class statistics of the max logit for the sml scorer (anomseg calibrate
    # --class-stats): {'mean': [...], 'std': [...], 'frames': N, 'source': ...}
    class_stats: dict = dataclasses.field(default_factory=dict)
    source: str = ''
    pretrained: bool = True
    # the images it was trained on, said where a user looks (node log, anomseg info):
    # 'synthetic' (the package's own world), 'cityscapes', '... adapted to FRAMES', '' unknown
    trained_on: str = ''

    @property
    def num_inlier_classes(self) -> int:
        return len(self.class_names)

    @property
    def label_channels(self) -> int:
        """The outputs the labels are the argmax of: the classes and the void output (a
        method's outputs after them take no part)."""
        if self.void_channel is None:
            return self.num_inlier_classes
        return max(self.num_inlier_classes, self.void_channel + 1)

    def check_outputs(self, path: str, channels: Optional[int] = None) -> None:
        """Refuse metadata that does not describe the network: its class names, void output
        and method outputs must add up to ``num_classes``, and that to the ``channels`` the
        network really has (when known). A mismatch would run silently on the wrong
        channels."""
        extra = get_method(self.method).extra_outputs if self.method else 0
        void = 0 if self.void_channel is None else 1
        if self.void_channel is not None and self.void_channel != len(self.class_names):
            raise CheckpointError(
                f'the metadata of {path!r} puts the void output at channel '
                f'{self.void_channel}, but names {len(self.class_names)} classes before it '
                f'(void must follow the classes); the metadata does not fit the network')
        expected = len(self.class_names) + void + extra
        if expected != self.num_classes:
            parts = f'{len(self.class_names)} class names' + (' + void' if void else '') + \
                (f' + {extra} {self.method} outputs' if extra else '')
            raise CheckpointError(f'the metadata of {path!r} does not fit its network: {parts} '
                                  f'make {expected} outputs, but it says num_classes '
                                  f'{self.num_classes}; re-export or re-save the checkpoint')
        if channels is not None and channels != self.num_classes:
            raise CheckpointError(f'{path!r}: the network has {channels} output channels but '
                                  f'its metadata describes {self.num_classes}; the metadata '
                                  f'belongs to another model')

    def to_dict(self) -> dict:
        info = dataclasses.asdict(self)
        info.pop('source')
        info['mean'], info['std'] = list(self.mean), list(self.std)
        info['input_size_hw'] = list(self.input_size_hw)
        return info

    @classmethod
    def from_dict(cls, info: dict, *, source: str = '') -> 'ModelInfo':
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in info.items() if k in names and k != 'source'}
        for key in ('mean', 'std', 'input_size_hw'):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs, source=source)


def public_cityscapes_info(num_classes: int, *, backbone: str = 'erfnet') -> ModelInfo:
    """A plain state dict of ``backbone`` read as a public Cityscapes model: 19 Cityscapes
    classes plus void as channel 19 when there are 20 outputs, with the normalisation and input
    size its backbone declares (``Backbone.pretrained_cfg``)."""
    if num_classes not in (19, 20):
        raise CheckpointError(f'a plain state dict is taken as a Cityscapes model, which has 19 '
                              f'or 20 outputs; this one has {num_classes}. Save it as an '
                              f'anomseg_ros checkpoint with its class names instead')
    cfg = pretrained_cfg(backbone)
    return ModelInfo(backbone=backbone, num_classes=num_classes,
                     void_channel=19 if num_classes == 20 else None, mean=cfg.mean,
                     std=cfg.std, input_size_hw=cfg.input_size_hw,
                     trained_on='cityscapes (a plain state dict is taken as one)')


def build_model(info: ModelInfo) -> nn.Module:
    """The untrained network ``info`` describes: its backbone, with its head."""
    if info.head not in HEADS:
        raise CheckpointError(f'unknown classifier head {info.head!r} in the checkpoint; this '
                              f'version knows {", ".join(HEADS)}')
    if info.method:  # a learned method's network: the method builds it
        return get_method(info.method).build_model(info, build_model)
    model = create_backbone(info.backbone, num_classes=info.num_classes)
    return WithIsoMaxPlus(model, info.num_classes) if info.head == 'isomax+' else model


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise CheckpointError(f'weights file {path!r} does not exist; give the path of a '
                              f'.pth/.pt checkpoint (or "random" for untrained weights)')
    if os.path.getsize(path) == 0:
        raise CheckpointError(f'weights file {path!r} is empty (0 bytes); was it copied '
                              f'completely?')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # torch raises many kinds for a corrupt file
        raise CheckpointError(f'weights file {path!r} cannot be read as a PyTorch checkpoint '
                              f'({type(exc).__name__}: {first_line(exc, empty="no message")}); '
                              f'is it complete and a torch.save file?') from None


def _strip_prefix(state: dict, prefix: str = 'module.') -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _infer_architecture(state: dict, path: str, backbone: Optional[str]) -> Tuple[str, int]:
    """The backbone (unless given) and number of classes of a plain state dict, from the
    classifier each backbone declares. Where several backbones name their classifier alike
    (ResNet-50's ``classifier.weight`` is a common name), the one whose parameters are exactly
    the file's is taken; none or two such is an error that asks for ``backbone``."""
    found = []
    for name in ([backbone] if backbone else list_backbones()):
        cls = backbone_class(name)
        if cls.classifier_key in state:
            found.append((name, int(state[cls.classifier_key].shape[cls.classifier_axis])))
    if len(found) > 1:
        keys = set(_strip_prefix(state))
        exact = [(name, classes) for name, classes in found
                 if set(create_backbone(name, num_classes=classes).state_dict()) == keys]
        if len(exact) != 1:
            raise CheckpointError(f'{path!r} could be {" or ".join(n for n, _ in found)} by its '
                                  f'classifier, and its parameters are exactly those of '
                                  f'{" and ".join(n for n, _ in exact) or "none of them"}; give '
                                  f'the backbone')
        found = exact
    if found:
        return found[0]
    raise CheckpointError(f'cannot tell the {"backbone and " if backbone is None else ""}number'
                          f' of classes of {path!r}: none of its keys is the classifier of '
                          f'{backbone or "a known backbone"}; check the file or `backbone`')


def load_state(model: nn.Module, state: dict, path: str) -> None:
    """Load ``state`` into ``model`` with strict key matching and a readable error."""
    state = _strip_prefix(state)
    model_keys = set(model.state_dict())
    missing = sorted(model_keys - set(state))
    unexpected = sorted(set(state) - model_keys)
    if missing or unexpected:
        raise CheckpointError(
            f'weights in {path!r} do not fit backbone {type(model).__name__}: '
            f'{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys '
            f'{unexpected[:3]}; check the backbone name and number of classes')
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'weights in {path!r} do not fit the model: '
                              f'{str(exc).splitlines()[-1].strip()}') from None


def load_model(path: str, *, backbone: Optional[str] = None) -> Tuple[nn.Module, ModelInfo]:
    """Build the model stored at ``path`` (on the CPU, eval mode) and return it with its info.

    ``path`` may be ``"random"``: an untrained ERFNet (or ``backbone``) with the Cityscapes
    conventions, for trying the pipeline without weights.
    """
    if path == 'random':
        info = public_cityscapes_info(20, backbone=backbone or 'erfnet')
        info.pretrained, info.source = False, 'random'
        return build_model(info).eval(), info
    checkpoint = _read(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'weights file {path!r} holds a {type(checkpoint).__name__}, '
                              f'not a state dict or an anomseg_ros checkpoint')
    if 'model_state' in checkpoint:
        info = ModelInfo.from_dict(checkpoint.get('model_info', {}), source=path)
        info.check_outputs(path)
        if backbone is not None and backbone != info.backbone:
            raise CheckpointError(f'{path!r} holds a {info.backbone!r} model, not {backbone!r}')
        state = checkpoint['model_state']
    else:
        state = _strip_prefix(checkpoint.get('state_dict', checkpoint))
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f'{path!r} is neither an anomseg_ros checkpoint (no '
                                  f'"model_state") nor a plain state dict of tensors')
        name, num_classes = _infer_architecture(state, path, backbone)
        info = public_cityscapes_info(num_classes, backbone=name)
        info.source = path
    model = build_model(info)
    load_state(model, state, path)
    return model.eval(), info


def read_checkpoint(path: str) -> dict:
    """The whole dict of an anomseg_ros checkpoint: model state, info and any training state
    (optimizer, scheduler, epoch ...) that ``save_checkpoint`` was given."""
    checkpoint = _read(path)
    if not isinstance(checkpoint, dict) or 'model_state' not in checkpoint:
        raise CheckpointError(f'{path!r} is not an anomseg_ros checkpoint (it has no '
                              f'"model_state")')
    return checkpoint


def save_checkpoint(path: str, model: nn.Module, info: ModelInfo, **extra) -> None:
    """Write an anomseg_ros checkpoint: model state, ``info`` and any training state."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    checkpoint = {'format': CHECKPOINT_FORMAT, 'model_state': state,
                  'model_info': info.to_dict(), **extra}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp'
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint behind


# what a deployable checkpoint keeps besides the weights: provenance, not training state
EXPORTED_KEYS = ('epoch', 'best_miou', 'history', 'args', 'config', 'options', 'calibration',
                 'threshold_calibration', 'phases_done', 'ensemble', 'adaptation')


def export_checkpoint(source: str, destination: str) -> dict:
    """Copy the model, its info and its training record from ``source`` to ``destination``,
    without the optimizer and scheduler state (a third of the size); returns what was kept."""
    checkpoint = read_checkpoint(source)
    kept = {key: checkpoint[key] for key in EXPORTED_KEYS if key in checkpoint}
    model, info = load_model(source)
    save_checkpoint(destination, model, info, **kept)
    return kept


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
