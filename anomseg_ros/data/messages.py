"""Image messages' data <-> numpy, ROS-free: the encodings the package reads and writes, the
checks a camera driver can fail, and stamps as integer nanoseconds.

Everything here reads or writes only message attributes (``encoding``, ``height``, ``step``,
``data``, ``header.stamp``), so rclpy's messages and rosbags' alike pass through it: the node,
its client and the bag tools share this one module. Building rclpy messages is
``ros/conversions.py``'s.
"""
from typing import Tuple

import cv2
import numpy as np

from anomseg_ros.data.images import check_pixels, decode_checked, DEFAULT_MAX_PIXELS
from anomseg_ros.errors import ImageFormatError

# encoding -> (channels, index of R, G, B); mono8 is replicated to three channels
INPUT_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}


# encoding -> (dtype, channels) of the images the package writes and reads back whole (its
# outputs, ground-truth labels, score maps); camera frames are read by INPUT_ENCODINGS
ARRAY_ENCODINGS = {'rgb8': (np.uint8, 3), 'mono8': (np.uint8, 1), '32FC1': (np.float32, 1)}
NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` (rclpy's or rosbags') as integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> Tuple[int, int]:
    """Integer nanoseconds as a ``Time``'s ``(sec, nanosec)``."""
    return divmod(int(stamp_ns), NS_PER_S)


def array_encoding(array: np.ndarray) -> str:
    """The ``ARRAY_ENCODINGS`` name of an array: rgb8 (H,W,3) uint8, mono8 (H,W) uint8, 32FC1
    (H,W) float32."""
    for encoding, (dtype, channels) in ARRAY_ENCODINGS.items():
        shape_ok = array.ndim == 3 and array.shape[2] == channels if channels > 1 else \
            array.ndim == 2
        if array.dtype == dtype and shape_ok:
            return encoding
    raise ImageFormatError(f'cannot store a {array.dtype} array of shape {array.shape} as an '
                           f'image; one of {", ".join(ARRAY_ENCODINGS)}')


def image_msg_to_rgb(msg, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) as ``(H,W,3)`` uint8 RGB;
    frames above ``max_pixels`` (0: no limit) are refused."""
    encoding = msg.encoding
    if encoding not in INPUT_ENCODINGS:
        raise ImageFormatError(f'unsupported encoding {encoding!r}; publish one of '
                               f'{", ".join(INPUT_ENCODINGS)} (or use image/compressed)')
    channels, rgb_index = INPUT_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageFormatError(f'empty image: {width}x{height}')
    check_pixels(width, height, max_pixels, f'{encoding} image')
    row_bytes = width * channels
    if step < row_bytes:
        raise ImageFormatError(f'step {step} is smaller than width*channels = {row_bytes} for '
                               f'{width}x{height} {encoding}')
    data = msg.data
    buffer = np.frombuffer(data, np.uint8) if not isinstance(data, np.ndarray) else data
    expected = step * height
    if buffer.size != expected:
        kind = 'truncated' if buffer.size < expected else 'oversized'
        raise ImageFormatError(f'{kind} data: {buffer.size} bytes, expected step*height = '
                               f'{step}*{height} = {expected}')
    pixels = buffer.reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == 'rgb8':
        return np.ascontiguousarray(pixels)
    return np.ascontiguousarray(pixels[..., list(rgb_index)])


def compressed_msg_to_rgb(msg, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (jpeg, png, ...) as ``(H,W,3)`` uint8 RGB; its header
    is read first and images above ``max_pixels`` (0: no limit) are refused undecoded."""
    buffer = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) \
        else msg.data
    what = f'compressed image of {buffer.size} bytes (format {msg.format!r})'
    image = decode_checked(buffer, cv2.IMREAD_COLOR, what, max_pixels=max_pixels)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_msg_to_array(msg) -> Tuple[np.ndarray, str]:
    """An rgb8, mono8 or 32FC1 image message (rclpy's or rosbags', rows possibly padded beyond
    ``step``) back to numpy: (H,W,3) or (H,W)."""
    if msg.encoding not in ARRAY_ENCODINGS:
        raise ImageFormatError(f'cannot read encoding {msg.encoding!r} as an array; one of '
                               f'{", ".join(ARRAY_ENCODINGS)} (camera frames: '
                               f'image_msg_to_rgb)')
    dtype, channels = ARRAY_ENCODINGS[msg.encoding]
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    row_bytes = msg.width * channels * np.dtype(dtype).itemsize
    array = np.ascontiguousarray(rows[:, :row_bytes]).view(dtype)
    array = array.reshape(msg.height, msg.width, channels)
    return (array[..., 0] if channels == 1 else array), msg.encoding
