"""Reading and writing image files (OpenCV, RGB order in memory)."""
import os

import cv2
import numpy as np

from anomseg_ros.errors import ImageFormatError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp', '.tif', '.tiff', '.ppm')


def read_rgb(path: str) -> np.ndarray:
    """An image file as ``(H,W,3)`` uint8 RGB; names the file when it cannot be read."""
    if not os.path.isfile(path):
        raise ImageFormatError(f'image file {path!r} does not exist')
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFormatError(f'image file {path!r} cannot be decoded (truncated, or not an '
                               f'image format OpenCV reads: {", ".join(IMAGE_EXTENSIONS)})')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str) -> np.ndarray:
    """A single-channel label image as ``(H,W)`` uint8, unchanged values."""
    label = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.isfile(path) else None
    if label is None:
        raise ImageFormatError(f'label file {path!r} is missing or cannot be decoded')
    if label.ndim == 3:  # some releases store masks as 3 equal channels
        label = label[..., 0]
    return label.astype(np.uint8)


def write_rgb(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ImageFormatError(f'cannot write image {path!r}')


def write_gray(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise ImageFormatError(f'cannot write image {path!r}')
