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
    return tensor, torch.from_numpy(np.array(label, dtype=np.int64))  # a copy: may be a memmap


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
        image, label = self._scaled_crop(image, label, factor)
        if float(torch.rand(())) < self.flip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        return _to_tensors(self._jitter(image), label, self.mean, self.std)

    def _scaled_crop(self, image: np.ndarray, label: np.ndarray, factor: float):
        """The crop window of the image scaled by ``factor``, padded with 0 (image) and 255
        (label, ignored) where the scaled image is smaller than the crop.

        Only the source pixels under the window are resized (a 256x128 crop of a 2048x1024
        image costs a 256x128 resize, not a whole-image one); image and label go through the
        same geometry, so they stay aligned.
        """
        crop_h, crop_w = self.crop_size_hw
        height, width = label.shape
        scaled_h, scaled_w = max(1, round(height * factor)), max(1, round(width * factor))
        top = int(torch.randint(max(scaled_h - crop_h, 0) + 1, ()))
        left = int(torch.randint(max(scaled_w - crop_w, 0) + 1, ()))
        if self.class_uniform and float(torch.rand(())) < self.class_uniform:
            centre = self._class_pixel(label)
            if centre is not None:
                top = min(max(round(centre[0] * factor) - crop_h // 2, 0),
                          max(scaled_h - crop_h, 0))
                left = min(max(round(centre[1] * factor) - crop_w // 2, 0),
                           max(scaled_w - crop_w, 0))
        if factor != 1.0:
            # source rows / columns under the window, one pixel of margin for the filters
            y0, x0 = max(int(top / factor) - 1, 0), max(int(left / factor) - 1, 0)
            y1 = min(int(np.ceil((top + crop_h) / factor)) + 2, height)
            x1 = min(int(np.ceil((left + crop_w) / factor)) + 2, width)
            size_wh = (max(1, round((x1 - x0) * factor)), max(1, round((y1 - y0) * factor)))
            image = cv2.resize(image[y0:y1, x0:x1], size_wh, interpolation=cv2.INTER_AREA
                               if factor < 1 else cv2.INTER_LINEAR)
            # pixel-centre aligned like INTER_LINEAR / INTER_AREA (plain INTER_NEAREST is not)
            label = cv2.resize(label[y0:y1, x0:x1], size_wh,
                               interpolation=cv2.INTER_NEAREST_EXACT)
            top, left = max(top - round(y0 * factor), 0), max(left - round(x0 * factor), 0)
        image, label = image[top:top + crop_h, left:left + crop_w], \
            label[top:top + crop_h, left:left + crop_w]
        pad_h, pad_w = crop_h - label.shape[0], crop_w - label.shape[1]
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=VOID_LABEL)
        return image, label

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
