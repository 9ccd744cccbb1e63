"""Write the synthetic world to disk: a Cityscapes-layout dataset, the anomaly tracks and the
training outliers. Deterministic per (seed, part, index) and resumable: files already written
are kept, and each file appears only once it is complete."""
import dataclasses
import json
import multiprocessing
import os
from typing import Iterator, List, Tuple

import cv2
import numpy as np

from anomseg_ros.data.synthetic.scene import render_scene
from anomseg_ros.data.synthetic.tracks import render_outlier, render_track_sample, TRACKS

PARTS = ('train', 'val') + TRACKS + ('outliers',)


@dataclasses.dataclass(frozen=True)
class Job:
    part: str
    index: int
    seed: int
    width: int
    height: int
    root: str

    @property
    def city(self) -> str:
        return f'synth{self.seed}'

    def paths(self) -> Tuple[str, ...]:
        if self.part in ('train', 'val'):
            stem = f'{self.city}_{self.index:06d}_000019'
            base = os.path.join(self.root, 'cityscapes')
            return (os.path.join(base, 'leftImg8bit', self.part, self.city,
                                 f'{stem}_leftImg8bit.png'),
                    os.path.join(base, 'gtFine', self.part, self.city,
                                 f'{stem}_gtFine_labelTrainIds.png'))
        if self.part == 'outliers':
            return (os.path.join(self.root, 'outliers', f'{self.index:05d}.png'),)
        track = os.path.join(self.root, 'tracks', self.part)
        return (os.path.join(track, 'images', f'{self.index:04d}.png'),
                os.path.join(track, 'labels_masks', f'{self.index:04d}.png'))

    def rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, PARTS.index(self.part), self.index])


def _write(path: str, image: np.ndarray) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f'{path}.tmp.png'
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2BGRA if image.shape[2] == 4 else cv2.COLOR_RGB2BGR
        image = cv2.cvtColor(image, code)
    if not cv2.imwrite(tmp, image):
        raise OSError(f'cannot write {path}')
    os.replace(tmp, path)


def run_job(job: Job) -> str:
    paths = job.paths()
    if all(os.path.exists(p) for p in paths):
        return 'kept'
    rng = job.rng()
    if job.part in ('train', 'val'):
        image, label, _, _ = render_scene(rng, job.width, job.height)
        outputs = (image, label)
    elif job.part == 'outliers':
        outputs = (render_outlier(rng),)
    else:
        image, label, _ = render_track_sample(job.part, rng, job.width, job.height)
        outputs = (image, label)
    for path, array in zip(paths, outputs):
        _write(path, array)
    return 'written'


def jobs(root: str, counts: dict, *, seed: int, width: int, height: int) -> Iterator[Job]:
    for part in PARTS:
        for index in range(counts.get(part, 0)):
            yield Job(part, index, seed, width, height, root)


def _init_worker():
    cv2.setNumThreads(1)


def generate(root: str, counts: dict, *, seed: int = 0, width: int = 1024, height: int = 512,
             workers: int = 2, progress=None) -> dict:
    """Render every part of ``counts`` ({'train': N, 'val': N, 'obstacle': N, ...}) into
    ``root``; returns how many files were written and kept."""
    unknown = sorted(set(counts) - set(PARTS))
    if unknown:
        raise ValueError(f'unknown parts {unknown}; parts: {", ".join(PARTS)}')
    todo: List[Job] = list(jobs(root, counts, seed=seed, width=width, height=height))
    tally = {'written': 0, 'kept': 0}
    if workers > 1:
        with multiprocessing.get_context('spawn').Pool(workers, _init_worker) as pool:
            for result in pool.imap_unordered(run_job, todo, chunksize=4):
                tally[result] += 1
                if progress is not None:
                    progress.update(1)
    else:
        for job in todo:
            tally[run_job(job)] += 1
            if progress is not None:
                progress.update(1)
    manifest = {'generator': 'anomseg_ros synthetic road world', 'seed': seed,
                'size_wh': [width, height], 'counts': counts,
                'layout': {'train/val': 'cityscapes/{leftImg8bit,gtFine}/<split>/<city>/',
                           'tracks': 'tracks/<track>/{images,labels_masks}/ (0, 1, 255)',
                           'outliers': 'outliers/*.png RGBA cut-outs (training outliers)'}}
    with open(os.path.join(root, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=2)
    return tally
