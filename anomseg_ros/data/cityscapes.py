"""Cityscapes semantic segmentation in its released folder layout (ROS-free).

::

    ROOT/leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.png
    ROOT/gtFine/SPLIT/CITY/NAME_gtFine_labelTrainIds.png   (trainIds 0-18, 255 ignored)

``*_labelTrainIds.png`` are written by cityscapesscripts' ``createTrainIdLabelImgs``; where only
the released ``*_gtFine_labelIds.png`` exist, their ids are mapped to trainIds here with the
table of ``cityscapesscripts.helpers.labels`` (``anomseg_ros.labels``).
"""
import dataclasses
import os
from typing import Callable, List, Optional

import numpy as np

from anomseg_ros.data.images import read_label, read_rgb
from anomseg_ros.errors import DatasetError
from anomseg_ros.labels import CITYSCAPES_LABELS, VOID_LABEL

IMAGE_SUFFIX = '_leftImg8bit.png'
TRAIN_ID_SUFFIX = '_gtFine_labelTrainIds.png'
LABEL_ID_SUFFIX = '_gtFine_labelIds.png'
LAYOUT = (f'ROOT/leftImg8bit/SPLIT/CITY/NAME{IMAGE_SUFFIX} with '
          f'ROOT/gtFine/SPLIT/CITY/NAME{TRAIN_ID_SUFFIX} (or NAME{LABEL_ID_SUFFIX})')


def _label_id_table() -> np.ndarray:
    table = np.full(256, VOID_LABEL, np.uint8)
    for label in CITYSCAPES_LABELS:
        if 0 <= label.id < 256 and 0 <= label.train_id < VOID_LABEL:
            table[label.id] = label.train_id
    return table


# labelId -> trainId for every uint8 value; ids without a trainId (255 or -1) map to 255.
LABEL_ID_TO_TRAIN_ID = _label_id_table()


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a Cityscapes labelIds image ``(H,W)`` uint8 to trainIds (0-18, 255 ignored)."""
    return LABEL_ID_TO_TRAIN_ID[np.asarray(label_ids, dtype=np.uint8)]


@dataclasses.dataclass
class CityscapesSample:
    """One image and its label file; ``label_is_train_ids`` is False for ``*_labelIds.png``."""

    name: str
    image_path: str
    label_path: str
    label_is_train_ids: bool


class CityscapesDataset:
    """Cityscapes ``split`` under ``root``: item ``i`` is ``(image, label)``.

    ``image`` is ``(H,W,3)`` uint8 RGB and ``label`` ``(H,W)`` uint8 trainIds, both passed
    through ``transform(image, label)`` when one is given.

    With ``cache_dir`` each image and label is decoded once and kept there as a raw ``.npy``
    array, read back memory-mapped: a training epoch then costs no PNG decoding, and a crop
    reads only the rows under it.
    """

    def __init__(self, root: str, split: str, *,
                 transform: Optional[Callable] = None, cache_dir: Optional[str] = None):
        self.root, self.split, self.transform = root, split, transform
        self.cache_dir = None if cache_dir is None else os.path.join(cache_dir, split)
        image_root = os.path.join(root, 'leftImg8bit', split)
        label_root = os.path.join(root, 'gtFine', split)
        for folder in (image_root, label_root):
            if not os.path.isdir(folder):
                raise DatasetError(f'{root!r} is not a Cityscapes folder with a {split!r} split: '
                                   f'{folder!r} is missing. Expected {LAYOUT}')
        self.samples: List[CityscapesSample] = []
        for city in sorted(os.listdir(image_root)):
            city_dir = os.path.join(image_root, city)
            if not os.path.isdir(city_dir):
                continue
            for file in sorted(os.listdir(city_dir)):
                if file.endswith(IMAGE_SUFFIX):
                    self.samples.append(self._pair(label_root, city, file))
        if not self.samples:
            raise DatasetError(f'{image_root!r} holds no *{IMAGE_SUFFIX} images in city '
                               f'folders. Expected {LAYOUT}')

    def _pair(self, label_root: str, city: str, file: str) -> CityscapesSample:
        name = file[:-len(IMAGE_SUFFIX)]
        image_path = os.path.join(self.root, 'leftImg8bit', self.split, city, file)
        train_ids = os.path.join(label_root, city, name + TRAIN_ID_SUFFIX)
        if os.path.isfile(train_ids):
            return CityscapesSample(name, image_path, train_ids, True)
        label_ids = os.path.join(label_root, city, name + LABEL_ID_SUFFIX)
        if os.path.isfile(label_ids):
            return CityscapesSample(name, image_path, label_ids, False)
        raise DatasetError(f'no label for image {image_path!r}: expected {train_ids!r} or '
                           f'{label_ids!r}')

    def __len__(self) -> int:
        return len(self.samples)

    def load_label(self, index: int) -> np.ndarray:
        """The label of item ``index`` as trainIds ``(H,W)`` uint8, without the transform."""
        return self._cached(index, 'label', self._decode_label)

    def _decode_label(self, index: int) -> np.ndarray:
        sample = self.samples[index]
        label = read_label(sample.label_path)
        return label if sample.label_is_train_ids else label_ids_to_train_ids(label)

    def _cached(self, index: int, kind: str, decode: Callable) -> np.ndarray:
        if self.cache_dir is None:
            return decode(index)
        sample = self.samples[index]
        source = sample.image_path if kind == 'image' else sample.label_path
        path = os.path.join(self.cache_dir, f'{sample.name}_{kind}.npy')
        try:
            if os.path.getmtime(path) >= os.path.getmtime(source):
                return np.load(path, mmap_mode='r')
        except (OSError, ValueError):  # not cached yet, or a stale / torn file: decode again
            pass
        array = decode(index)
        try:
            os.makedirs(self.cache_dir, exist_ok=True)
            tmp = f'{path}.{os.getpid()}.tmp.npy'
            np.save(tmp, array)
            os.replace(tmp, path)  # complete files only, also with several loader workers
        except OSError as exc:
            raise DatasetError(f'cannot write the decoded-image cache {path!r}: {exc}; free '
                               f'space there or train without `cache`') from None
        return array

    def __getitem__(self, index: int):
        image = self._cached(index, 'image', lambda i: read_rgb(self.samples[i].image_path))
        label = self.load_label(index)
        if image.shape[:2] != label.shape:
            raise DatasetError(f'image {self.samples[index].image_path!r} is '
                               f'{image.shape[1]}x{image.shape[0]} but its label '
                               f'{self.samples[index].label_path!r} is '
                               f'{label.shape[1]}x{label.shape[0]}')
        if self.transform is not None:
            return self.transform(image, label)
        return image, label
