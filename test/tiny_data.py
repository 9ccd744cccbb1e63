"""Tiny datasets the tests write: anomaly benchmarks in the images/ + labels_masks/ layout, and
a PNG that claims more pixels than it holds."""
import struct
import zlib

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


def png_claiming(width, height):
    """A 66-byte PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression
    bomb's header: OpenCV raises on 100000x100000, or allocates it all on smaller claims)."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) +
            chunk(b'IDAT', zlib.compress(b'\x00' * 8)) + chunk(b'IEND', b''))
