"""Cityscapes label conventions (trainIds 0-18, 255 void), taken from cityscapesscripts."""
from typing import List

import numpy as np
from cityscapesscripts.helpers.labels import trainId2label

VOID_LABEL = 255
NUM_CITYSCAPES_CLASSES = 19
CITYSCAPES_CLASSES: List[str] = [trainId2label[i].name for i in range(NUM_CITYSCAPES_CLASSES)]


def cityscapes_palette() -> np.ndarray:
    """``(256,3)`` uint8 colours indexed by trainId; unused ids and void (255) are black."""
    palette = np.zeros((256, 3), np.uint8)
    for train_id in range(NUM_CITYSCAPES_CLASSES):
        palette[train_id] = trainId2label[train_id].color
    return palette


PALETTE = cityscapes_palette()


def colorize(labels: np.ndarray) -> np.ndarray:
    """Label image ``(H,W)`` uint8 to its Cityscapes colour image ``(H,W,3)`` uint8 RGB."""
    return PALETTE[labels]
