"""Anomaly benchmarks in the ``images/`` + ``labels_masks/`` layout (SegmentMeIfYouCan, the
course ``Validation_Dataset`` bundle), with labels mapped to 0 inlier / 1 anomaly / 255 void."""
import dataclasses
import os
from typing import Dict, Iterator, List, Optional

import numpy as np

from anomseg_ros.data.images import IMAGE_EXTENSIONS, read_label, read_rgb
from anomseg_ros.errors import DatasetError

# How each convention maps raw mask values to 0 / 1 / 255.
CONVENTIONS: Dict[str, str] = {
    'smiyc': '0 inlier, 1 anomaly, 255 void (SegmentMeIfYouCan, Fishyscapes Static)',
    'road_anomaly': '0 inlier, 2 anomaly mapped to 1 (Road Anomaly, Lis et al. 2019)',
}
_FOLDER_CONVENTIONS = {'roadanomaly': 'road_anomaly'}


@dataclasses.dataclass
class Sample:
    name: str
    image_path: str
    label_path: str

    def load(self, convention: str):
        return read_rgb(self.image_path), map_label(read_label(self.label_path), convention)


def map_label(raw: np.ndarray, convention: str) -> np.ndarray:
    if convention == 'smiyc':
        return raw
    if convention == 'road_anomaly':
        return np.where(raw == 2, 1, raw).astype(np.uint8)
    raise DatasetError(f'unknown label convention {convention!r}; known: {", ".join(CONVENTIONS)}')


class AnomalyDataset:
    """``root/images/NAME.ext`` with ``root/labels_masks/NAME.png`` (or ``NAME_labels_semantic
    .png``); yields ``(name, rgb, label)`` with labels in 0 / 1 / 255."""

    def __init__(self, root: str, *, convention: Optional[str] = None):
        self.root = root
        image_dir, label_dir = os.path.join(root, 'images'), os.path.join(root, 'labels_masks')
        if not (os.path.isdir(image_dir) and os.path.isdir(label_dir)):
            raise DatasetError(f'{root!r} is not an anomaly dataset folder: expected the '
                               f'sub-folders images/ and labels_masks/')
        folder = os.path.basename(os.path.normpath(root)).lower()
        self.convention = convention or _FOLDER_CONVENTIONS.get(folder, 'smiyc')
        if self.convention not in CONVENTIONS:
            raise DatasetError(f'unknown label convention {self.convention!r}; '
                               f'known: {", ".join(CONVENTIONS)}')
        self.samples: List[Sample] = []
        for file in sorted(os.listdir(image_dir), key=_natural_key):
            stem, ext = os.path.splitext(file)
            if ext.lower() not in IMAGE_EXTENSIONS:
                continue
            candidates = [os.path.join(label_dir, f'{stem}.png'),
                          os.path.join(label_dir, f'{stem}_labels_semantic.png')]
            label = next((c for c in candidates if os.path.isfile(c)), None)
            if label is None:
                raise DatasetError(f'no label for image {os.path.join(image_dir, file)!r}: '
                                   f'expected {candidates[0]!r}')
            self.samples.append(Sample(stem, os.path.join(image_dir, file), label))
        if not self.samples:
            raise DatasetError(f'{image_dir!r} holds no images ({", ".join(IMAGE_EXTENSIONS)})')

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.root))

    def describe_convention(self) -> str:
        return f'{self.convention}: {CONVENTIONS[self.convention]}'

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator:
        for sample in self.samples:
            yield (sample.name, *sample.load(self.convention))


def _natural_key(name: str):
    stem = os.path.splitext(name)[0]
    return (0, int(stem), '') if stem.isdigit() else (1, 0, name)
