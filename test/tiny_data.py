"""Tiny datasets the tests write: anomaly benchmarks in the images/ + labels_masks/ layout."""
import numpy as np

from anomseg_ros.data.images import write_gray, write_rgb


def write_benchmark(root, count=3, *, size_hw=(64, 128), box=(20, 40, 30, 60), anomaly=1,
                    top_rows=0, top_value=255, seed=0):
    """``count`` random-noise images with one anomaly rectangle ``box`` (top, bottom, left,
    right) labelled ``anomaly`` and the first ``top_rows`` rows labelled ``top_value``;
    returns ``root``."""
    rng = np.random.default_rng(seed)
    top, bottom, left, right = box
    for i in range(count):
        write_rgb(str(root / 'images' / f'{i}.png'),
                  rng.integers(0, 256, (*size_hw, 3), dtype=np.uint8))
        label = np.zeros(size_hw, np.uint8)
        label[top:bottom, left:right] = anomaly
        label[:top_rows] = top_value
        write_gray(str(root / 'labels_masks' / f'{i}.png'), label)
    return root
