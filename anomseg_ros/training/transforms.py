"""Joint image + label transforms for training and validation (ROS-free).

Both take ``(image (H,W,3) uint8 RGB, label (H,W) uint8)`` and return ``(image (3,h,w) float32
normalised, label (h,w) int64)``. Random draws use torch's global generator only, so a
``torch.manual_seed`` (which the DataLoader also does per worker) makes them repeatable.
"""
from typing import Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL

# Rec. 601 luma, as torchvision's rgb_to_grayscale.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _uniform(low: float, high: float) -> float:
    return float(torch.empty(()).uniform_(low, high)) if high > low else float(low)


def _to_tensors(image: np.ndarray, label: np.ndarray, mean: torch.Tensor, std: torch.Tensor):
    """uint8 or [0,255] float HxWx3 -> normalised float (3,H,W); label -> int64 (H,W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    tensor = tensor.sub_(mean).div_(std)
    return tensor, torch.from_numpy(np.ascontiguousarray(label)).long()


def _check(size_hw: Sequence[int], mean: Sequence[float], std: Sequence[float]):
    """Validated ``(size_hw, mean (3,1,1), std (3,1,1))``."""
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    if min(size_hw) <= 0:
        raise ConfigError(f'transform size must be positive, got {size_hw[1]}x{size_hw[0]}')
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f'mean and std need 3 values each, std positive; got {mean}, {std}')
    return (size_hw, torch.tensor([float(v) for v in mean]).view(3, 1, 1),
            torch.tensor([float(v) for v in std]).view(3, 1, 1))


class TrainTransform:
    """Random scale, random crop to ``crop_size_hw``, horizontal flip, colour jitter.

    The image is first scaled so that it just covers ``base_size_hw`` (scale 1; by default the
    crop size), then by a factor drawn uniformly from ``scale_range``; a random ``crop_size_hw``
    window is cut out, padded with 0 (image) and 255 (label, ignored) where the scaled image is
    smaller. With ``base_size_hw`` the network input size and a smaller crop, objects keep the
    scale they have at inference while each step costs less. Brightness, contrast and
    saturation factors are drawn from ``[1 - x, 1 + x]`` as torchvision's ``ColorJitter`` does;
    they change the image only.

    With probability ``class_uniform`` the crop is centred on a pixel of a class drawn
    uniformly from those in the image (class-uniform sampling, as Zhu et al.'s "Improving
    Semantic Segmentation via Video Propagation" and NVIDIA's segmentation code do): thin and
    rare classes (poles, signs, riders) then fill crops as often as roads do.
    """

    def __init__(self, crop_size_hw: Sequence[int], *, base_size_hw: Sequence[int] = None,
                 mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0),
                 scale_range: Tuple[float, float] = (0.5, 2.0), flip_prob: float = 0.5,
                 brightness: float = 0.3, contrast: float = 0.3, saturation: float = 0.3,
                 class_uniform: float = 0.0):
        self.crop_size_hw, self.mean, self.std = _check(crop_size_hw, mean, std)
        self.base_size_hw = _check(base_size_hw or crop_size_hw, mean, std)[0]
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ConfigError(f'scale range must be 0 < low <= high, got {scale_range}')
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.flip_prob = float(flip_prob)
        self.jitter = (float(brightness), float(contrast), float(saturation))
        if not 0.0 <= class_uniform <= 1.0:
            raise ConfigError(f'class-uniform crop probability must be in [0, 1], got '
                              f'{class_uniform}')
        self.class_uniform = float(class_uniform)

    def __call__(self, image: np.ndarray, label: np.ndarray):
        base_h, base_w = self.base_size_hw
        height, width = label.shape
        factor = max(base_h / height, base_w / width) * _uniform(*self.scale_range)
        size_wh = (max(1, round(width * factor)), max(1, round(height * factor)))
        if size_wh != (width, height):
            shrink = factor < 1
            image = cv2.resize(image, size_wh,
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            # pixel-centre aligned like INTER_LINEAR / INTER_AREA (plain INTER_NEAREST is not)
            label = cv2.resize(label, size_wh, interpolation=cv2.INTER_NEAREST_EXACT)
        image, label = self._crop(image, label)
        if float(torch.rand(())) < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        return _to_tensors(self._jitter(image), label, self.mean, self.std)

    def _crop(self, image: np.ndarray, label: np.ndarray):
        crop_h, crop_w = self.crop_size_hw
        pad_h, pad_w = max(crop_h - label.shape[0], 0), max(crop_w - label.shape[1], 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=VOID_LABEL)
        top = int(torch.randint(label.shape[0] - crop_h + 1, ()))
        left = int(torch.randint(label.shape[1] - crop_w + 1, ()))
        if self.class_uniform and float(torch.rand(())) < self.class_uniform:
            centre = self._class_pixel(label)
            if centre is not None:
                top = min(max(centre[0] - crop_h // 2, 0), label.shape[0] - crop_h)
                left = min(max(centre[1] - crop_w // 2, 0), label.shape[1] - crop_w)
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        return image[window], label[window]

    @staticmethod
    def _class_pixel(label: np.ndarray):
        """A random pixel ``(row, col)`` of a class drawn uniformly from those in ``label``
        (void left out), or None when all is void."""
        counts = np.bincount(label.ravel(), minlength=256)
        counts[VOID_LABEL] = 0
        present = np.flatnonzero(counts)
        if not len(present):
            return None
        chosen = present[int(torch.randint(len(present), ()))]
        rows, cols = np.nonzero(label == chosen)
        pick = int(torch.randint(len(rows), ()))
        return int(rows[pick]), int(cols[pick])

    def _jitter(self, image: np.ndarray) -> np.ndarray:
        brightness, contrast, saturation = (_uniform(max(0.0, 1 - x), 1 + x) for x in self.jitter)
        out = image.astype(np.float32) * brightness
        np.clip(out, 0, 255, out=out)
        gray_mean = float((out @ _LUMA).mean())
        out = (out - gray_mean) * contrast + gray_mean
        np.clip(out, 0, 255, out=out)
        gray = (out @ _LUMA)[..., None]
        out = (out - gray) * saturation + gray
        return np.clip(out, 0, 255, out=out)


class EvalTransform:
    """Resize to the network input ``size_hw``: image bilinear with antialiasing (as
    ``Detector.preprocess``), label by nearest neighbour (pixel-centre aligned, as PIL)."""

    def __init__(self, size_hw: Sequence[int], *, mean: Sequence[float] = (0.0, 0.0, 0.0),
                 std: Sequence[float] = (1.0, 1.0, 1.0)):
        self.size_hw, self.mean, self.std = _check(size_hw, mean, std)

    def __call__(self, image: np.ndarray, label: np.ndarray):
        if label.shape != self.size_hw:
            tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
            tensor = F.interpolate(tensor, size=self.size_hw, mode='bilinear',
                                   align_corners=False, antialias=True)[0]
            image = tensor.permute(1, 2, 0).numpy()
            label = cv2.resize(label, self.size_hw[::-1], interpolation=cv2.INTER_NEAREST_EXACT)
        return _to_tensors(image, label, self.mean, self.std)
