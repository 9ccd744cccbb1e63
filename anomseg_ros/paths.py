"""Where the package's installed files (config, launch, models) are."""
import os
import sys
from typing import Optional

from anomseg_ros.errors import CheckpointError

PACKAGE = 'anomseg_ros'
DEFAULT_WEIGHTS = 'models/erfnet_synthetic.pt'
# the bundled learned score (SynBoost, with its own segmentation model inside), shown by the demo
LEARNED_WEIGHTS = 'models/synboost_synthetic.pt'


def share_dir() -> str:
    """``share/anomseg_ros`` of a colcon install, else the source tree (``pip install -e``),
    else ``<prefix>/share/anomseg_ros`` of a plain ``pip install``."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return get_package_share_directory(PACKAGE)
    except Exception:  # not on an ament index: LookupError, or no ament_index_python
        pass
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isfile(os.path.join(source, 'package.xml')):
        return source
    return os.path.join(sys.prefix, 'share', PACKAGE)


def resolve_weights(weights: str) -> str:
    """'' -> the bundled default; 'random' stays; a relative path is tried from the working
    directory, then from the package's share folder (so config files can say models/x.pt)."""
    if weights == 'random':
        return weights
    if not weights:
        default = default_weights()
        if default is None:
            raise CheckpointError(f'no weights were given and the bundled default '
                                  f'{DEFAULT_WEIGHTS} is not installed; give a checkpoint path '
                                  f'(e.g. the public erfnet_pretrained.pth) or "random"')
        return default
    if os.path.isabs(weights) or os.path.exists(weights):
        return weights
    shared = os.path.join(share_dir(), weights)
    return shared if os.path.exists(shared) else weights


def _bundled(relative: str) -> Optional[str]:
    path = os.path.join(share_dir(), relative)
    return path if os.path.isfile(path) else None


def default_weights() -> Optional[str]:
    """The bundled trained weights, or None while the package ships none."""
    return _bundled(DEFAULT_WEIGHTS)


def learned_weights() -> Optional[str]:
    """The bundled learned-score checkpoint, or None when it is not installed."""
    return _bundled(LEARNED_WEIGHTS)
