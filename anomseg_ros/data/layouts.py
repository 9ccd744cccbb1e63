"""Which kind of dataset a folder holds."""
import os


def is_cityscapes_layout(path: str) -> bool:
    """leftImg8bit/ with gtFine/ (Lost and Found has gtCoarse/ instead, an anomaly layout)."""
    return all(os.path.isdir(os.path.join(path, d)) for d in ('leftImg8bit', 'gtFine'))
