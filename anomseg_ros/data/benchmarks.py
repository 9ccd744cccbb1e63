"""Public anomaly benchmarks in their released folder layouts, and their label conventions.

Each layout (``LAYOUTS``) pairs image files with label files, ``EXT`` being any of
``IMAGE_EXTENSIONS``; each convention (``CONVENTIONS``) maps raw label values to 0 inlier /
1 anomaly / 255 void:

* ``smiyc``: SegmentMeIfYouCan RoadAnomaly21 / RoadObstacle21 as released,
  ``images/NAME.EXT`` + ``labels_masks/NAME_labels_semantic.png``; convention ``smiyc``.
* ``validation_subset``: a subset of the course ``Validation_Dataset`` bundle,
  ``images/NAME.EXT`` + ``labels_masks/NAME.png``; convention by folder name as the course
  evaluation code does (``RoadAnomaly`` -> ``road_anomaly``, ``LostAndFound`` ->
  ``lost_and_found``, any other name ``smiyc``).
* ``road_anomaly``: Road Anomaly (Lis et al. 2019) as released, ``frames/NAME.EXT`` +
  ``frames/NAME.labels/labels_semantic.png``; convention ``road_anomaly``.
* ``fishyscapes``: Fishyscapes Lost & Found / Static folder copies, ``original/NAME.EXT`` (or
  ``images/NAME.EXT``) + ``labels/NAME.png``; convention ``smiyc``.
* ``lost_and_found``: Lost and Found (Pinggera et al. 2016), Cityscapes-style,
  ``leftImg8bit/SPLIT/CITY/NAME_leftImg8bit.EXT`` +
  ``gtCoarse/SPLIT/CITY/NAME_gtCoarse_labelIds.png`` and no ``gtFine/``; convention
  ``lost_and_found``.
"""
import dataclasses
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from anomseg_ros.data.images import IMAGE_EXTENSIONS, read_label, read_rgb
from anomseg_ros.errors import DatasetError

# How each convention maps raw label values to 0 / 1 / 255.
CONVENTIONS: Dict[str, str] = {
    'smiyc': '0 inlier, 1 anomaly, 255 void, kept as they are (other values are refused)',
    'road_anomaly': '2 (anomaly) -> 1, every other value -> 0 inlier, no void',
    'lost_and_found': 'gtCoarse labelIds: 1 (free road) -> 0 inlier, 2-200 (obstacles) -> 1 '
                      'anomaly, 0 and 201-255 -> 255 void',
}


def _tables() -> Dict[str, np.ndarray]:
    road_anomaly = np.zeros(256, np.uint8)
    road_anomaly[2] = 1
    lost_and_found = np.full(256, 255, np.uint8)
    lost_and_found[1] = 0
    lost_and_found[2:201] = 1
    return {'smiyc': np.arange(256, dtype=np.uint8), 'road_anomaly': road_anomaly,
            'lost_and_found': lost_and_found}


_TABLES = _tables()
_SMIYC_VALUES = np.zeros(256, bool)
_SMIYC_VALUES[[0, 1, 255]] = True


def map_label(raw: np.ndarray, convention: str) -> np.ndarray:
    """Map a raw ``(H,W)`` uint8 label to 0 inlier / 1 anomaly / 255 void (a new array)."""
    if convention not in _TABLES:
        raise DatasetError(f'unknown label convention {convention!r}; '
                           f'known: {", ".join(CONVENTIONS)}')
    raw = np.asarray(raw, dtype=np.uint8)
    if convention == 'smiyc' and not _SMIYC_VALUES[raw].all():
        values = np.unique(raw[~_SMIYC_VALUES[raw]]).tolist()
        raise DatasetError(f'label values {values} are not 0 / 1 / 255 of the smiyc convention; '
                           f'pass the convention of this benchmark (known: '
                           f'{", ".join(CONVENTIONS)})')
    return _TABLES[convention][raw]


@dataclasses.dataclass
class Sample:
    """One image and its label file, read only when ``load`` is called."""

    name: str
    image_path: str
    label_path: str

    def load(self, convention: str) -> Tuple[np.ndarray, np.ndarray]:
        """``(rgb (H,W,3) uint8, label (H,W) uint8 in 0 / 1 / 255)``."""
        image, raw = read_rgb(self.image_path), read_label(self.label_path)
        if image.shape[:2] != raw.shape:
            raise DatasetError(f'image {self.image_path!r} is {image.shape[1]}x{image.shape[0]} '
                               f'but its label {self.label_path!r} is '
                               f'{raw.shape[1]}x{raw.shape[0]}')
        try:
            return image, map_label(raw, convention)
        except DatasetError as error:
            raise DatasetError(f'label file {self.label_path!r}: {error}') from None


def _isdir(root: str, *parts: str) -> bool:
    return os.path.isdir(os.path.join(root, *parts))


def natural_key(name: str):
    """Sort ``2.png`` before ``10.png``, and numbered names before the others."""
    stem = os.path.splitext(name)[0]
    return (0, int(stem), '') if stem.isdigit() else (1, 0, name)


def _images(folder: str) -> List[Tuple[str, str]]:
    """``(stem, file)`` of the image files in ``folder``, in natural order."""
    files = sorted((f for f in os.listdir(folder)
                    if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS), key=natural_key)
    if not files:
        raise DatasetError(f'{folder!r} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    return [(os.path.splitext(f)[0], f) for f in files]


def _paired(image_dir: str, label_of: Callable[[str], str]) -> List[Sample]:
    samples = []
    for stem, file in _images(image_dir):
        image, label = os.path.join(image_dir, file), label_of(stem)
        if not os.path.isfile(label):
            raise DatasetError(f'no label for image {image!r}: expected {label!r}')
        samples.append(Sample(stem, image, label))
    return samples


def _no_split(root: str, split: Optional[str], layout: str) -> None:
    if split is not None:
        raise DatasetError(f'{root!r} ({layout} layout) has no splits; leave split unset')


def _smiyc(root: str, split: Optional[str]) -> List[Sample]:
    _no_split(root, split, 'smiyc')
    image_dir, samples = os.path.join(root, 'images'), []
    for stem, file in _images(image_dir):
        label = os.path.join(root, 'labels_masks', f'{stem}_labels_semantic.png')
        if os.path.isfile(label):
            samples.append(Sample(stem, os.path.join(image_dir, file), label))
        elif stem.startswith('validation'):  # test frames ship without labels
            raise DatasetError(f'no label for image {os.path.join(image_dir, file)!r}: '
                               f'expected {label!r}')
    if not samples:
        raise DatasetError(f'{image_dir!r} holds no validation image with a label in '
                           f'labels_masks/NAME_labels_semantic.png')
    return samples


def _validation_subset(root: str, split: Optional[str]) -> List[Sample]:
    _no_split(root, split, 'validation_subset')
    return _paired(os.path.join(root, 'images'),
                   lambda stem: os.path.join(root, 'labels_masks', f'{stem}.png'))


def _road_anomaly(root: str, split: Optional[str]) -> List[Sample]:
    _no_split(root, split, 'road_anomaly')
    frames = os.path.join(root, 'frames')
    return _paired(frames, lambda stem: os.path.join(frames, f'{stem}.labels',
                                                     'labels_semantic.png'))


def _fishyscapes(root: str, split: Optional[str]) -> List[Sample]:
    _no_split(root, split, 'fishyscapes')
    image_dir = os.path.join(root, 'original' if _isdir(root, 'original') else 'images')
    return _paired(image_dir, lambda stem: os.path.join(root, 'labels', f'{stem}.png'))


LAF_IMAGE_SUFFIX, LAF_LABEL_SUFFIX = '_leftImg8bit', '_gtCoarse_labelIds.png'


def _lost_and_found(root: str, split: Optional[str]) -> List[Sample]:
    image_root = os.path.join(root, 'leftImg8bit')
    splits = sorted(s for s in os.listdir(image_root) if _isdir(image_root, s))
    if split is not None:
        if split not in splits:
            raise DatasetError(f'{root!r} has no split {split!r} in leftImg8bit/; found: '
                               f'{", ".join(splits) or "none"}')
        splits = [split]
    samples = []
    for name in splits:
        for city in sorted(os.listdir(os.path.join(image_root, name))):
            if not _isdir(image_root, name, city):
                continue
            for file in sorted(os.listdir(os.path.join(image_root, name, city))):
                stem, ext = os.path.splitext(file)
                if not stem.endswith(LAF_IMAGE_SUFFIX) or ext.lower() not in IMAGE_EXTENSIONS:
                    continue
                stem = stem[:-len(LAF_IMAGE_SUFFIX)]
                image = os.path.join(image_root, name, city, file)
                label = os.path.join(root, 'gtCoarse', name, city, stem + LAF_LABEL_SUFFIX)
                if not os.path.isfile(label):
                    raise DatasetError(f'no label for image {image!r}: expected {label!r}')
                samples.append(Sample(stem, image, label))
    if not samples:
        raise DatasetError(f'{image_root!r} holds no SPLIT/CITY/NAME{LAF_IMAGE_SUFFIX}.EXT '
                           f'images (splits: {", ".join(splits) or "none"})')
    return samples


# Course evaluation code: convention by subset folder name (compared case-insensitively).
FOLDER_CONVENTIONS = {'roadanomaly': 'road_anomaly', 'lostandfound': 'lost_and_found'}


@dataclasses.dataclass(frozen=True)
class Layout:
    """How one benchmark release lays out its files, and the convention of its labels."""

    name: str
    benchmark: str
    pairing: str
    matches: Callable[[str], bool]
    discover: Callable[[str, Optional[str]], List[Sample]]
    convention: Callable[[str], str]

    def describe(self) -> str:
        return f'{self.name} ({self.benchmark}): {self.pairing}'


def _has_smiyc_labels(root: str) -> bool:
    return any(f.endswith('_labels_semantic.png')
               for f in os.listdir(os.path.join(root, 'labels_masks')))


def _by_folder_name(root: str) -> str:
    return FOLDER_CONVENTIONS.get(os.path.basename(os.path.normpath(root)).lower(), 'smiyc')


# Tried in this order; the first layout that matches a folder is used.
LAYOUTS: Dict[str, Layout] = {layout.name: layout for layout in (
    Layout('smiyc', 'SegmentMeIfYouCan RoadAnomaly21 / RoadObstacle21 as released',
           'images/ and labels_masks/: ROOT/images/NAME.EXT with '
           'ROOT/labels_masks/NAME_labels_semantic.png (images without a label whose NAME does '
           'not start with "validation" are unlabelled test frames, left out)',
           lambda root: (_isdir(root, 'images') and _isdir(root, 'labels_masks')
                         and _has_smiyc_labels(root)),
           _smiyc, lambda root: 'smiyc'),
    Layout('validation_subset', 'a subset of the course Validation_Dataset bundle',
           'images/ and labels_masks/: ROOT/images/NAME.EXT with ROOT/labels_masks/NAME.png '
           '(convention by folder name: RoadAnomaly -> road_anomaly, LostAndFound -> '
           'lost_and_found, any other -> smiyc)',
           lambda root: _isdir(root, 'images') and _isdir(root, 'labels_masks'),
           _validation_subset, _by_folder_name),
    Layout('road_anomaly', 'Road Anomaly (Lis et al. 2019) as released',
           'frames/: ROOT/frames/NAME.EXT with ROOT/frames/NAME.labels/labels_semantic.png',
           lambda root: _isdir(root, 'frames'), _road_anomaly, lambda root: 'road_anomaly'),
    Layout('fishyscapes', 'Fishyscapes Lost & Found / Static validation folder copies',
           'original/ (or images/) and labels/: ROOT/original/NAME.EXT (or '
           'ROOT/images/NAME.EXT) with ROOT/labels/NAME.png',
           lambda root: _isdir(root, 'labels') and (_isdir(root, 'original')
                                                    or _isdir(root, 'images')),
           _fishyscapes, lambda root: 'smiyc'),
    Layout('lost_and_found', 'Lost and Found (Pinggera et al. 2016), Cityscapes-style',
           'leftImg8bit/ and gtCoarse/ without gtFine/: ROOT/leftImg8bit/SPLIT/CITY/'
           f'NAME{LAF_IMAGE_SUFFIX}.EXT with ROOT/gtCoarse/SPLIT/CITY/NAME{LAF_LABEL_SUFFIX}',
           lambda root: (_isdir(root, 'leftImg8bit') and _isdir(root, 'gtCoarse')
                         and not _isdir(root, 'gtFine')),
           _lost_and_found, lambda root: 'lost_and_found'),
)}


def find_layout(root: str) -> Layout:
    """The layout of the benchmark folder ``root``; a ``DatasetError`` says what was expected."""
    if not os.path.isdir(root):
        raise DatasetError(f'anomaly dataset folder {root!r} does not exist')
    for layout in LAYOUTS.values():
        if layout.matches(root):
            return layout
    if _isdir(root, 'leftImg8bit') and _isdir(root, 'gtFine'):
        raise DatasetError(f'{root!r} is a Cityscapes semantic segmentation folder '
                           f'(leftImg8bit/ + gtFine/), not an anomaly benchmark: read it with '
                           f'anomseg_ros.data.cityscapes.CityscapesDataset')
    subsets = [name for name in sorted(os.listdir(root), key=natural_key)
               if _isdir(root, name) and any(layout.matches(os.path.join(root, name))
                                             for layout in LAYOUTS.values())]
    if subsets:
        raise DatasetError(f'{root!r} is a bundle of benchmark subsets (like the course '
                           f'Validation_Dataset) holding {", ".join(subsets)}; '
                           f'pass one subset folder, e.g. '
                           f'{os.path.join(root, subsets[0])!r}')
    expected = '\n'.join(f'  - {layout.describe()}' for layout in LAYOUTS.values())
    raise DatasetError(f'{root!r} is not an anomaly benchmark folder in a known layout. '
                       f'Expected one of (EXT: {", ".join(IMAGE_EXTENSIONS)}):\n{expected}')
