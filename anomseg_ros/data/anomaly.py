"""Anomaly benchmark datasets: any layout of ``anomseg_ros.data.benchmarks`` (SegmentMeIfYouCan,
the course ``Validation_Dataset`` subsets, Road Anomaly, Fishyscapes, Lost and Found), yielding
``(name, rgb, label)`` with labels mapped to 0 inlier / 1 anomaly / 255 void."""
import os
from typing import Iterator, List, Optional

from anomseg_ros.data.benchmarks import (CONVENTIONS, find_layout, Layout, LAYOUTS, map_label,
                                         Sample)
from anomseg_ros.errors import DatasetError

__all__ = ['AnomalyDataset', 'CONVENTIONS', 'LAYOUTS', 'Sample', 'map_label',
           'open_anomaly_dataset']


class AnomalyDataset:
    """The benchmark folder ``root`` in whichever layout of ``LAYOUTS`` it has.

    Iterating yields ``(name, rgb (H,W,3) uint8, label (H,W) uint8 in 0 / 1 / 255)``, reading
    one image at a time. ``convention`` overrides the layout's label convention (a key of
    ``CONVENTIONS``); ``split`` picks one split of a layout that has splits (Lost and Found:
    ``train`` or ``test``; by default all splits found).
    """

    def __init__(self, root: str, *, convention: Optional[str] = None,
                 split: Optional[str] = None):
        if convention is not None and convention not in CONVENTIONS:
            raise DatasetError(f'unknown label convention {convention!r}; '
                               f'known: {", ".join(CONVENTIONS)}')
        self.root = root
        self.layout: Layout = find_layout(root)
        self.split = split
        self.convention_given = convention is not None
        self.convention = convention or self.layout.convention(root)
        self.samples: List[Sample] = self.layout.discover(root, split)
        seen = {}
        for sample in self.samples:
            if sample.name in seen:
                raise DatasetError(f'two images are named {sample.name!r}: '
                                   f'{seen[sample.name]!r} and {sample.image_path!r}')
            seen[sample.name] = sample.image_path

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.root))

    def describe_convention(self) -> str:
        """The label mapping applied, and where it comes from."""
        source = ('given' if self.convention_given
                  else f'of the {self.layout.name} layout, folder {self.name!r}')
        return f'{self.convention}: {CONVENTIONS[self.convention]} ({source})'

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator:
        for sample in self.samples:
            yield (sample.name, *sample.load(self.convention))

    def __repr__(self) -> str:
        return (f'AnomalyDataset({self.root!r}, layout={self.layout.name!r}, '
                f'convention={self.convention!r}, images={len(self)})')


def open_anomaly_dataset(root: str, *, convention: Optional[str] = None,
                         split: Optional[str] = None) -> AnomalyDataset:
    """The anomaly benchmark at ``root``, its layout detected (see ``AnomalyDataset``)."""
    return AnomalyDataset(root, convention=convention, split=split)
