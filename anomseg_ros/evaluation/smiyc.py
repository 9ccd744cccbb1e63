"""Score maps in the SegmentMeIfYouCan submission format (the road-anomaly-benchmark package).

The benchmark's ``Evaluation.save_output`` stores each frame's anomaly score as
``DIR/anomaly_p/METHOD/DATASET/FRAME.hdf5``: one HDF5 file per image holding the dataset
``value``, the score map as float16 at the image's resolution (higher = more anomalous),
gzip-compressed at level 9. ``FRAME`` is the image's file stem; ``DATASET`` the benchmark's
name for the split the outputs are saved under (``AnomalyTrack-all``, ``ObstacleTrack-all``,
``LostAndFound-test``, ...). The benchmark's metrics read them back from there
(``python -m road_anomaly_benchmark metric PixBinaryClass METHOD DATASET`` with
``DIR_OUTPUTS=DIR``); the leaderboard takes the same files for the test frames.
"""
import os
from typing import Dict, Optional

import cv2
import numpy as np

from anomseg_ros.errors import DatasetError

# the benchmark's dataset names for the folders its tracks ship as
DATASET_NAMES = {'roadanomaly21': 'AnomalyTrack-all', 'dataset_anomalytrack': 'AnomalyTrack-all',
                 'roadobstacle21': 'ObstacleTrack-all', 'roadobsticle21': 'ObstacleTrack-all',
                 'dataset_obstacletrack': 'ObstacleTrack-all',
                 'lostandfound': 'LostAndFound-test', 'dataset_lostandfound': 'LostAndFound-test'}
VALUE = 'value'
FLOAT16_MAX = float(np.finfo(np.float16).max)


def dataset_name(folder: str, given: Optional[str] = None) -> str:
    """The benchmark's name for a dataset folder (``given`` wins; else by the folder's name,
    else the folder's name itself)."""
    if given:
        return given
    base = os.path.basename(os.path.normpath(folder))
    return DATASET_NAMES.get(base.lower(), base)


def score_path(out: str, method: str, dataset: str, frame: str) -> str:
    return os.path.join(out, 'anomaly_p', method, dataset, f'{frame}.hdf5')


class SmiycWriter:
    """Writes score maps of one dataset, one method folder per scorer (``methods``:
    {scorer: method name})."""

    def __init__(self, out: str, dataset: str, methods: Dict[str, str]):
        import h5py  # noqa: F401 - refuse early where it is missing
        self.out, self.dataset, self.methods = out, dataset, dict(methods)
        self.written = 0

    def write(self, frame: str, scores: Dict[str, np.ndarray], size_hw) -> None:
        """``scores`` by scorer, at any resolution: resized (bilinear) to ``size_hw``, the
        image's own, as the benchmark compares there."""
        for scorer, method in self.methods.items():
            write_score(score_path(self.out, method, self.dataset, frame), scores[scorer],
                        size_hw)
        self.written += 1


def write_score(path: str, score: np.ndarray, size_hw) -> None:
    import h5py
    score = np.asarray(score, np.float32)
    if score.shape != tuple(size_hw):
        score = cv2.resize(score, tuple(size_hw)[::-1], interpolation=cv2.INTER_LINEAR)
    if not np.isfinite(score).all() or np.abs(score).max(initial=0) > FLOAT16_MAX:
        raise DatasetError(f'{path}: the scores are not finite or not within float16 '
                           f'(|score| <= {FLOAT16_MAX:g}), which the benchmark stores')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f'{path}.partial'
    with h5py.File(partial, 'w') as handle:
        handle.create_dataset(VALUE, data=score.astype(np.float16), compression=9)
    os.replace(partial, path)


def read_score(path: str) -> np.ndarray:
    """A score map of the format back as float32."""
    import h5py
    try:
        with h5py.File(path, 'r') as handle:
            return np.asarray(handle[VALUE][:], np.float32)
    except (OSError, KeyError) as exc:
        raise DatasetError(f'score map {path} cannot be read as SegmentMeIfYouCan HDF5 (a '
                           f'dataset "{VALUE}"): {exc}') from None
