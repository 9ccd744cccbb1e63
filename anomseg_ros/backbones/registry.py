"""The backbone registry: every segmentation network is a ``Backbone`` class registered by
name, which says what it is (``backbones/base.py``)."""
import inspect
from typing import cast, List, Tuple, Type

from torch import nn

from anomseg_ros.backbones.base import Backbone, PretrainedCfg
from anomseg_ros.errors import ConfigError
from anomseg_ros.registry import Registry

BACKBONES: Registry[Type[nn.Module]] = Registry('backbone')
register_backbone = BACKBONES.register


def backbone_class(name: str) -> Type[Backbone]:
    """The class registered as ``name``: what it declares (``Backbone``'s class attributes) is
    readable without building it."""
    return cast(Type[Backbone], BACKBONES.get(name))


def pretrained_cfg(name: str) -> PretrainedCfg:
    """How backbone ``name``'s public weights see images (the default for a network registered
    without ``Backbone``'s declarations)."""
    return getattr(backbone_class(name), 'pretrained_cfg', PretrainedCfg())


def create_backbone(name: str, *, num_classes: int, **kwargs) -> nn.Module:
    """Build the backbone ``name`` with ``num_classes`` outputs (untrained weights); an
    argument it does not take is refused, not ignored."""
    cls = backbone_class(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != 'self']
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ConfigError(f'backbone {name!r} does not take {", ".join(unknown)}; it takes: '
                          f'{", ".join(accepted)}')
    return cls(num_classes=num_classes, **kwargs)


def list_backbones() -> List[str]:
    return BACKBONES.names()


def with_num_classes(model: nn.Module, backbone: str, num_classes: int) -> Tuple[nn.Module, list]:
    """``model`` rebuilt as ``backbone`` with ``num_classes`` outputs: every weight is kept,
    a layer with the classes on one axis keeps the classes both have (dropped ones go, added
    ones keep their fresh initialisation). Returns the model and ``(key, axis)`` of each layer
    that changed size."""
    resized = create_backbone(backbone, num_classes=num_classes)
    state, changed = resized.state_dict(), []
    for key, value in model.state_dict().items():
        target = state[key]
        if value.shape != target.shape:
            axis = next(d for d in range(value.dim()) if value.shape[d] != target.shape[d])
            common = min(value.shape[axis], target.shape[axis])
            target.narrow(axis, 0, common).copy_(value.narrow(axis, 0, common))
            changed.append((key, axis))
        else:
            state[key] = value
    resized.load_state_dict(state)
    return resized, changed


def check_input_size(backbone: str, size_hw, what: str = 'input size') -> None:
    """Refuse a ``(height, width)`` the backbone cannot take: not positive, or not a multiple
    of its ``input_multiple`` (an unregistered backbone is held to positive sizes only)."""
    try:
        multiple = backbone_class(backbone).input_multiple
    except ConfigError:
        multiple = 1
    height, width = size_hw
    if height <= 0 or width <= 0 or height % multiple or width % multiple:
        need = f'positive multiples of {multiple} ({backbone} downsamples {multiple}x)' \
            if multiple > 1 else 'positive'
        raise ConfigError(f'{what} must be {need}, got {width}x{height}')
