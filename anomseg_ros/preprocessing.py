"""What the network is fed: RGB uint8 images of any size to a normalised float batch at its
input size. ROS-free; the pipeline, the exporters' calibration and the benchmarks share it."""
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.errors import ImageFormatError


def check_rgb(image: np.ndarray) -> np.ndarray:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0):
        shape = getattr(image, 'shape', None)
        dtype = getattr(image, 'dtype', type(image).__name__)
        raise ImageFormatError(f'expected an RGB image as a (H,W,3) uint8 array, got shape '
                               f'{shape} of {dtype}')
    return image


def to_network_images(images: Sequence[np.ndarray], size_hw: Tuple[int, int]) -> torch.Tensor:
    """RGB uint8 images to one uint8 ``(B,h,w,3)`` batch at ``size_hw``, the layout a camera
    gives: what a model that normalises in its own graph is fed (``takes_images``).

    The resize runs on uint8 on the CPU, where PyTorch's antialiased bilinear matches PIL's
    (the reference protocol) to within rounding.
    """
    tensors = []
    for image in images:
        image = check_rgb(image)
        if not image.flags.writeable:  # e.g. a view of a message buffer
            image = image.copy()
        tensor = torch.from_numpy(np.ascontiguousarray(image))
        if tuple(tensor.shape[:2]) != tuple(size_hw):
            tensor = F.interpolate(tensor.permute(2, 0, 1)[None], size=tuple(size_hw),
                                   mode='bilinear', align_corners=False,
                                   antialias=True)[0].permute(1, 2, 0)
        tensors.append(tensor)
    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)


def to_network_input(images: Sequence[np.ndarray], size_hw: Tuple[int, int], mean, std, *,
                     device='cpu') -> torch.Tensor:
    """RGB uint8 images to a ``(B,3,h,w)`` float batch at ``size_hw``, scaled to [0,1] and
    normalised with ``mean`` / ``std`` (sequences of 3, or tensors shaped ``(1,3,1,1)``).
    Resized as ``to_network_images``; only the smaller result goes to the device."""
    batch = to_network_images(images, size_hw).permute(0, 3, 1, 2).contiguous()
    batch = batch.to(device, non_blocking=True).float().div_(255.0)
    mean = torch.as_tensor(mean, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std
