"""SynBoost's training data generator (paper 002 section 3.2), on batches of inlier images.

Two sources, drawn per image:

- **label swap** (the source of Lis et al.): instances of known object classes in the ground
  truth are given another class; the generator renders the *altered* map, so input and
  synthesis disagree exactly there. The dissimilarity network sees the altered map. Targets:
  the swapped instances 1, the rest 0, void ignored.
- **void as anomaly**: objects outside the known classes are anomalies. Cityscapes marks them
  void; the synthetic world's void is only the car's bonnet, so outlier cut-outs (the same
  family as PEBAL's AnomalyMix, never the test families) are pasted in as the void objects.
  The network sees the segmentation model's *prediction* and its synthesis, as at inference.
  Targets: the pasted object 1, the rest 0, the ground truth's own void ignored.

Instances come from the dataset's instance ids when it has them (``instances``), else from
connected components of each object class in the labels (touching objects of one class then
count as one instance, which does not change what a swap teaches).
"""
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch

from anomseg_ros.labels import VOID_LABEL

# trainIds of the Cityscapes classes that have instances (person ... bicycle) and of the
# thin objects (pole, traffic light, traffic sign) that [24] swaps as well
SWAP_CLASSES = (5, 6, 7, 11, 12, 13, 14, 15, 16, 17, 18)
IGNORE = VOID_LABEL


def label_instances(labels: np.ndarray, classes: Sequence[int] = SWAP_CLASSES, *,
                    min_area: int = 30) -> List[np.ndarray]:
    """Boolean masks of the instances of ``classes`` in one label map ``(H,W)``: connected
    components (8-neighbour) of at least ``min_area`` pixels."""
    masks = []
    for cls in classes:
        region = (labels == cls).astype(np.uint8)
        if region.sum() < min_area:
            continue
        count, components, stats, _ = cv2.connectedComponentsWithStats(region, connectivity=8)
        for index in range(1, count):
            if stats[index, cv2.CC_STAT_AREA] >= min_area:
                masks.append(components == index)
    return masks


def swap_labels(labels: torch.Tensor, num_classes: int, generator: torch.Generator, *,
                probability: float = 0.5, min_area: int = 30
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """One label map ``(H,W)`` with each instance swapped to another random known class with
    ``probability`` (at least one when there is any); returns the altered map and the mask of
    swapped pixels."""
    altered = labels.clone()
    swapped = torch.zeros_like(labels, dtype=torch.bool)
    instances = label_instances(labels.cpu().numpy(), min_area=min_area)
    if not instances:
        return altered, swapped
    chosen = torch.rand(len(instances), generator=generator) < probability
    if not chosen.any():
        chosen[int(torch.randint(len(instances), (), generator=generator))] = True
    for mask, take in zip(instances, chosen.tolist()):
        if not take:
            continue
        mask = torch.from_numpy(mask).to(labels.device)
        original = int(labels[mask][0])
        new = int(torch.randint(num_classes - 1, (), generator=generator))
        new += new >= original  # any class but its own
        altered[mask] = new
        swapped |= mask
    return altered, swapped


def choose_sources(batch: int, generator: torch.Generator, *, void_share: float = 0.5
                   ) -> List[str]:
    """``"swap"`` or ``"void"`` per image; ``void_share = 0`` is the ablation without the void
    source (label swaps only, as Lis et al.)."""
    draws = torch.rand(batch, generator=generator).tolist()
    return ['void' if d < void_share else 'swap' for d in draws]


def make_targets(labels: torch.Tensor, anomalies: torch.Tensor) -> torch.Tensor:
    """Per-pixel targets ``(B,H,W)``: 1 where ``anomalies`` (swapped or pasted pixels), 0
    elsewhere, ``IGNORE`` where the ground truth is void and nothing was pasted or swapped."""
    return anomalies.long().masked_fill((labels == VOID_LABEL) & ~anomalies, IGNORE)
