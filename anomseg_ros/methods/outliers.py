"""AnomalyMix (paper 004 section 3.3): outlier objects cut out by their masks and pasted into
inlier training images, labelled as the anomaly class.

Outliers come from a folder of RGBA cut-outs (``anomseg synth``'s ``outliers/``, alpha = mask)
or from a folder with ``images/`` and ``masks/`` of the same stems (a user's own, e.g. COCO
objects with their instance masks, mask > 0 = object). ``retexture`` keeps the cut-outs'
shapes and fills them with real texture from camera frames.
"""
import glob
import os
from typing import List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.data.images import read_label, read_rgb
from anomseg_ros.errors import DatasetError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp')
PASTE_SCALE = (0.08, 0.3)  # a pasted object's longer side, as a share of the image width
TEXTURE_SCALE = (0.05, 0.2)  # a texture crop's longer side, as a share of its frame's width
AVOID_SHARE = 0.2  # a texture crop may hold at most this share of pixels it should avoid


def parse_scale(text) -> tuple:
    """``'MIN,MAX'`` (or a pair) as the range of a pasted object's longer side over the
    image width, ``0 < MIN <= MAX <= 1``."""
    try:
        low, high = (float(v) for v in (text.split(',') if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise DatasetError(f'the paste scale is MIN,MAX (shares of the image width, e.g. '
                           f'0.08,0.3); got {text!r}') from None
    if not 0.0 < low <= high <= 1.0:
        raise DatasetError(f'the paste scale needs 0 < MIN <= MAX <= 1 (shares of the image '
                           f'width); got {low:g},{high:g}')
    return low, high


def _files(folder: str) -> List[str]:
    return sorted(p for p in glob.glob(os.path.join(folder, '*'))
                  if p.lower().endswith(IMAGE_EXTENSIONS))


def load_outliers(folder: str, *, limit: Optional[int] = None) -> List[torch.Tensor]:
    """Outlier cut-outs as float ``(4,h,w)`` tensors: RGB in [0,1] and the mask in {0,1}."""
    import cv2
    if not os.path.isdir(folder):
        raise DatasetError(f'outlier folder {folder!r} does not exist; give a folder of RGBA '
                           f'cut-outs or one with images/ and masks/')
    cutouts = []
    if os.path.isdir(os.path.join(folder, 'images')):
        for path in _files(os.path.join(folder, 'images'))[:limit]:
            stem = os.path.splitext(os.path.basename(path))[0]
            masks = [p for p in _files(os.path.join(folder, 'masks'))
                     if os.path.splitext(os.path.basename(p))[0] == stem]
            if not masks:
                raise DatasetError(f'outlier image {path} has no mask masks/{stem}.png')
            rgb, mask = read_rgb(path), read_label(masks[0]) > 0
            cutouts.append(np.dstack([rgb, mask.astype(np.uint8) * 255]))
    else:
        for path in _files(folder)[:limit]:
            rgba = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
                raise DatasetError(f'outlier cut-out {path} is not an RGBA image (its alpha '
                                   f'channel is the object mask)')
            cutouts.append(cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA))
    if not cutouts:
        raise DatasetError(f'no outlier images in {folder!r}')
    tensors = []
    for rgba in cutouts:
        t = torch.from_numpy(np.ascontiguousarray(rgba)).permute(2, 0, 1).float() / 255.0
        t[3] = (t[3] >= 0.5).float()
        tensors.append(t)
    return tensors


def paste_outliers(images: torch.Tensor, labels: torch.Tensor, outliers: List[torch.Tensor], *,
                   label: int, mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator,
                   probability: float = 0.5, scale=PASTE_SCALE) -> torch.Tensor:
    """Paste one random outlier into each image of the batch with ``probability`` (in place):
    resized so its longer side is ``scale`` of the image width, at a random place, its pixels
    labelled ``label``. ``images`` are normalised with ``mean`` / ``std`` ``(3,1,1)``; returns
    the per-image mask of pasted pixels ``(B,H,W)`` bool."""
    batch, _, height, width = images.shape
    pasted = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
    for i in range(batch):
        if torch.rand((), generator=generator).item() >= probability:
            continue
        cutout = outliers[int(torch.randint(len(outliers), (), generator=generator))]
        side = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item()
        factor = side * width / max(cutout.shape[1:])
        h = max(2, min(height, int(round(cutout.shape[1] * factor))))
        w = max(2, min(width, int(round(cutout.shape[2] * factor))))
        resized = F.interpolate(cutout[None], size=(h, w), mode='bilinear',
                                align_corners=False)[0].to(images.device)
        top = int(torch.randint(height - h + 1, (), generator=generator))
        left = int(torch.randint(width - w + 1, (), generator=generator))
        mask = resized[3] >= 0.5
        rgb = (resized[:3] - mean.to(images.device)) / std.to(images.device)
        region = images[i, :, top:top + h, left:left + w]
        region[:, mask] = rgb[:, mask]
        labels[i, top:top + h, left:left + w][mask] = label
        pasted[i, top:top + h, left:left + w] = mask
    return pasted


def retexture(cutouts: List[torch.Tensor], frames: List[np.ndarray], *,
              generator: torch.Generator, avoid: Optional[List[np.ndarray]] = None,
              scale=TEXTURE_SCALE, tries: int = 20) -> List[torch.Tensor]:
    """The ``cutouts``' shapes (their masks) filled with real texture: for each, a crop of a
    random frame (RGB uint8 ``(H,W,3)``) at a random place, its longer side ``scale`` of the
    frame's width and the cut-out's aspect, resized to the cut-out and flipped at random.
    Where ``avoid`` gives a frame's pixels to keep out of (bool ``(H,W)``), a crop that is
    more than ``AVOID_SHARE`` such pixels is drawn again (up to ``tries`` times, then kept).

    Pasted synthetic textures are easy to tell from a camera's pixels, so a score trained on
    them learns to find the paste; a crop of another part of a real frame (vegetation, a
    wall, a vehicle, sky) on the road has the camera's own noise, blur and colours."""
    if not frames:
        raise DatasetError('retexturing outliers needs at least one frame')
    if avoid is not None and len(avoid) != len(frames):
        raise DatasetError(f'retexturing got {len(frames)} frames but {len(avoid)} masks')
    out = []
    for cutout in cutouts:
        for _ in range(tries):
            index = int(torch.randint(len(frames), (), generator=generator))
            frame = frames[index]
            height, width = frame.shape[:2]
            side = scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=generator).item()
            factor = side * width / max(cutout.shape[1:])
            h = max(2, min(height, int(round(cutout.shape[1] * factor))))
            w = max(2, min(width, int(round(cutout.shape[2] * factor))))
            top = int(torch.randint(height - h + 1, (), generator=generator))
            left = int(torch.randint(width - w + 1, (), generator=generator))
            if avoid is None or avoid[index][top:top + h, left:left + w].mean() <= AVOID_SHARE:
                break
        crop = torch.from_numpy(np.ascontiguousarray(frame[top:top + h, left:left + w]))
        crop = crop.permute(2, 0, 1)[None].float() / 255.0
        crop = F.interpolate(crop, size=tuple(cutout.shape[1:]), mode='bilinear',
                             align_corners=False)[0].clamp(0.0, 1.0)
        if torch.rand((), generator=generator).item() < 0.5:
            crop = crop.flip(-1)
        out.append(torch.cat([crop, cutout[3:4]], 0))
    return out


def save_outliers(cutouts: List[torch.Tensor], folder: str) -> str:
    """``cutouts`` (as ``load_outliers`` returns them) written as RGBA PNGs into ``folder``,
    which ``load_outliers`` reads back; returns ``folder``."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    for index, cutout in enumerate(cutouts):
        rgba = (cutout.permute(1, 2, 0) * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
        if not cv2.imwrite(os.path.join(folder, f'{index:05d}.png'),
                           cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)):
            raise DatasetError(f'cannot write outlier cut-outs into {folder!r}')
    return folder
