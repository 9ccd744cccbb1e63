"""Adapting a learned anomaly score to a user's camera from unlabeled frames (ROS-free).

``anomseg adapt`` turns ordinary frames of the target camera into training data for the
learned methods, then trains one with ``train_anomaly`` (the same loop as ``anomseg
train-anomaly``; nothing here trains):

- **Inlier targets** are the base model's own predictions, kept where its max softmax is at
  least ``confidence``; the other pixels are void (255) and take no part in the losses. The
  frames may hold real anomalies: they are treated as inliers (and mostly fall under the
  confidence cut-off).
- **Anomaly targets** are objects pasted into the frames by the method (AnomalyMix, paper 004;
  SynBoost's void source, paper 002), from an outlier folder: RGBA cut-outs, or images/ +
  masks/ (``anomseg synth --outliers`` makes a family of synthetic ones). With
  ``outlier_texture='frames'`` the cut-outs keep their shapes and take their pixels from
  crops of the training frames themselves (``methods.outliers.retexture``), away from what
  the base model labels road or sidewalk (ground pasted on the ground is no anomaly),
  written to ``ROOT/outliers``.
- A share of the frames (``holdout``) is never trained on: each gets one pasted outlier and
  becomes a labelled **pasted track** (``images/`` + ``labels_masks/``, 1 where pasted), on
  which a method that searches settings on labelled frames (SynBoost's ensemble) searches them.

``prepare_adaptation_data`` writes::

    ROOT/leftImg8bit/train/adapt/NAME_leftImg8bit.png   the training frames
    ROOT/gtFine/train/adapt/NAME_gtFine_labelTrainIds.png   their pseudo-labels
    ROOT/track/images/NAME.png, ROOT/track/labels_masks/NAME.png   the pasted track
    ROOT/prepared.json   what was written from what (a second call with the same inputs keeps it)
"""
import dataclasses
import hashlib
import json
import os
from typing import Iterable, Optional, Tuple

import numpy as np
import torch

from anomseg_ros.data.images import write_gray, write_rgb
from anomseg_ros.errors import DatasetError
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.methods.outliers import (
    PASTE_SCALE, load_outliers, parse_scale, paste_outliers, retexture, save_outliers)

PREPARED = 'prepared.json'
OUTLIER_TEXTURES = ('own', 'frames')  # the cut-outs' own pixels, or crops of the frames
GROUND_LABELS = (0, 1)  # road and sidewalk (Cityscapes trainIds): no texture is taken from them
TEXTURE_FRAMES = 100  # the frames textures are cut from, at most (their ground masks are kept)


@dataclasses.dataclass
class AdaptData:
    """How the unlabeled frames become training data."""

    confidence: float = 0.9   # pseudo-labels where the base model's max softmax is at least this
    holdout: float = 0.15     # share of the frames kept out of training for the pasted track
    seed: int = 0
    paste_scale: Tuple[float, float] = PASTE_SCALE  # the pasted track's object sizes
    outlier_texture: str = 'own'  # one of OUTLIER_TEXTURES

    def check(self) -> None:
        if not 0.0 <= self.confidence < 1.0:
            raise DatasetError(f'the pseudo-label confidence is a softmax probability in [0, 1), '
                               f'got {self.confidence}')
        if not 0.0 < self.holdout < 0.5:
            raise DatasetError(f'the held-out share is between 0 and 0.5, got {self.holdout}')
        self.paste_scale = parse_scale(self.paste_scale)
        if self.outlier_texture not in OUTLIER_TEXTURES:
            raise DatasetError(f'the outlier texture is one of {", ".join(OUTLIER_TEXTURES)}, '
                               f'got {self.outlier_texture!r}')


def pseudo_labels(detection, confidence: float) -> np.ndarray:
    """trainIds of a ``Detection`` made with the ``msp`` scorer (temperature 1), void where
    the max softmax (1 - the msp score) is below ``confidence`` or the model predicts void."""
    labels = detection.labels.copy()
    labels[(1.0 - detection.score_map) < confidence] = VOID_LABEL
    return labels


def _split(count: int, holdout: float, seed: int) -> np.ndarray:
    """A boolean mask of the held-out frames: every frame whose index the seeded permutation
    puts in the first ``holdout`` share (at least one, at most all but one)."""
    held = min(max(1, int(round(holdout * count))), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    mask = np.zeros(count, bool)
    mask[order[:held]] = True
    return mask


def prepare_adaptation_data(frames: Iterable[Tuple[str, np.ndarray]], detector, root: str, *,
                            outliers: str, config: Optional[AdaptData] = None,
                            source: str = '') -> dict:
    """Pseudo-label ``frames`` (``(name, RGB)``) with ``detector`` (scorer msp) into ``root``
    as described in the module doc; returns (and writes to ``root/prepared.json``) what was
    done: frame counts, the share of pixels ignored, the source. Frames are read once, in
    order; the split into training and held-out frames is fixed by ``config.seed``."""
    config = config or AdaptData()
    config.check()
    if detector.scorer.name != 'msp' or getattr(detector.scorer, 'temperature', 1.0) != 1.0:
        raise DatasetError('pseudo-labels need the msp scorer at temperature 1')
    cutouts = load_outliers(outliers)  # refused before any frame is read
    frames = list(frames)
    if len(frames) < 2:
        raise DatasetError(f'adaptation needs at least 2 readable frames of the camera, got '
                           f'{len(frames)}; give a folder of images or a bag topic with more')
    names = [name for name, _ in frames]
    if len(set(names)) != len(names):
        raise DatasetError('two frames have the same name; give unique file names')
    held = _split(len(frames), config.holdout, config.seed)
    image_dir = os.path.join(root, 'leftImg8bit', 'train', 'adapt')
    label_dir = os.path.join(root, 'gtFine', 'train', 'adapt')
    track_images = os.path.join(root, 'track', 'images')
    track_labels = os.path.join(root, 'track', 'labels_masks')
    for folder in (image_dir, label_dir, track_images, track_labels):
        os.makedirs(folder, exist_ok=True)
    ignored, pixels, trained = 0, 0, 0
    digest = hashlib.sha256()
    textures = []  # (frame, its ground) of evenly spaced training frames, TEXTURE_FRAMES at most
    stride = max(1, -(-int((~held).sum()) // TEXTURE_FRAMES))
    for (name, image), is_held in zip(frames, held):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(image).tobytes()[::4093])
        if is_held:
            continue
        labels = pseudo_labels(detector.predict(image), config.confidence)
        ignored += int((labels == VOID_LABEL).sum())
        pixels += labels.size
        write_rgb(os.path.join(image_dir, f'{name}_leftImg8bit.png'), image)
        write_gray(os.path.join(label_dir, f'{name}_gtFine_labelTrainIds.png'), labels)
        if config.outlier_texture == 'frames' and trained % stride == 0:
            textures.append((image, np.isin(labels, GROUND_LABELS)))
        trained += 1
    if config.outlier_texture == 'frames':
        cutouts = retexture(cutouts, [image for image, _ in textures],
                            avoid=[ground for _, ground in textures],
                            generator=torch.Generator().manual_seed(config.seed + 1))
        outliers = save_outliers(cutouts, os.path.join(root, 'outliers'))
    generator = torch.Generator().manual_seed(config.seed)
    for (name, image), is_held in zip(frames, held):
        if not is_held:
            continue
        # torch.tensor copies: a bag's frames are read-only views of their messages
        batch = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0
        labels = torch.zeros(1, *image.shape[:2], dtype=torch.uint8)
        paste_outliers(batch, labels, cutouts, label=1, mean=torch.zeros(3, 1, 1),
                       std=torch.ones(3, 1, 1), generator=generator, probability=1.0,
                       scale=config.paste_scale)
        pasted = (batch[0].permute(1, 2, 0) * 255.0).round().clamp(0, 255)
        write_rgb(os.path.join(track_images, f'{name}.png'), pasted.to(torch.uint8).numpy())
        write_gray(os.path.join(track_labels, f'{name}.png'), labels[0].numpy())
    record = {'source': source, 'frames': len(frames), 'training_frames': int((~held).sum()),
              'held_out_frames': int(held.sum()), 'confidence': config.confidence,
              'holdout': config.holdout, 'seed': config.seed,
              'paste_scale': list(config.paste_scale), 'outlier_texture': config.outlier_texture,
              'ignored_share': ignored / max(pixels, 1), 'outliers': os.path.abspath(outliers),
              'outlier_cutouts': len(cutouts), 'frames_sha256': digest.hexdigest(),
              'base': detector.info.source}
    with open(os.path.join(root, PREPARED), 'w') as stream:
        json.dump(record, stream, indent=1)
    return record


def prepared(root: str) -> Optional[dict]:
    """What ``prepare_adaptation_data`` wrote into ``root``, or None."""
    try:
        with open(os.path.join(root, PREPARED)) as stream:
            return json.load(stream)
    except (OSError, ValueError):
        return None
