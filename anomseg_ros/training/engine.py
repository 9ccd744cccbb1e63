"""One training epoch, one validation pass, and ERFNet's optimiser and learning-rate schedule."""
import itertools
import math
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from anomseg_ros.errors import TrainingError
from anomseg_ros.evaluation.metrics import SegmentationMetrics
from anomseg_ros.precision import autocast, to_fast_layout
from anomseg_ros.training.distributed import all_reduce_sum, is_main_process

# Romera et al.'s Adam (Eromera/erfnet_pytorch train/main.py, "scheduler 2").
ERFNET_LR = 5e-4
ERFNET_BETAS = (0.9, 0.999)
ERFNET_EPS = 1e-8
ERFNET_WEIGHT_DECAY = 1e-4
POLY_POWER = 0.9


def make_optimizer(model: nn.Module, *, lr: float = ERFNET_LR,
                   weight_decay: float = ERFNET_WEIGHT_DECAY) -> torch.optim.Optimizer:
    """ERFNet's Adam: betas (0.9, 0.999), eps 1e-8, weight decay 1e-4 (L2, as in the paper)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.Adam(trainable, lr=lr, betas=ERFNET_BETAS, eps=ERFNET_EPS,
                            weight_decay=weight_decay)


def make_poly_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, *,
                        power: float = POLY_POWER) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly learning rate ``lr * (1 - it / total_iters) ** power``, stepped once per iteration
    (torchvision's segmentation reference), 0 from ``total_iters`` on.

    Its state holds the iteration count, not ``total_iters``: see ``restore_scheduler``.
    """
    total_iters = max(int(total_iters), 1)

    def decay(iteration: int) -> float:
        return (1.0 - min(iteration, total_iters) / total_iters) ** power

    return torch.optim.lr_scheduler.LambdaLR(optimizer, decay)


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Load ``state`` (iteration count, base rates) and set the optimiser's rates to this
    schedule's value there, so a resumed run with more epochs continues on the longer one."""
    scheduler.load_state_dict(state)
    for group, base_lr, decay in zip(scheduler.optimizer.param_groups, scheduler.base_lrs,
                                     scheduler.lr_lambdas):
        group['lr'] = base_lr * decay(scheduler.last_epoch)


def freeze_batch_norm_of_frozen_layers(model: nn.Module) -> None:
    """Keep the running statistics of batch norm layers whose weights are not trained (a
    frozen backbone) as they are: put them in eval mode."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine and \
                not module.weight.requires_grad:
            module.eval()


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler,
                    criterion: Optional[nn.Module], device: torch.device, *,
                    step: Optional[Callable] = None, first_step: int = 0,
                    amp_dtype: torch.dtype = torch.float32,
                    scaler: Optional[torch.amp.GradScaler] = None, progress: bool = True,
                    max_iters: Optional[int] = None, desc: str = 'train') -> Dict[str, float]:
    """Train over ``loader`` (at most ``max_iters`` batches), stepping ``scheduler`` (if any)
    per batch. The one epoch loop of segmentation training and of every learned method.

    Each batch's loss is ``criterion(model(images), labels)``, or, for training that is more
    than a loss on the outputs (a method pasting anomalies, say), ``step(model, images,
    labels, index)`` returning ``(loss, terms)``, ``index`` counting batches from
    ``first_step`` over all epochs. The forward pass and the loss run under ``amp_dtype``
    autocast (bfloat16 on CPUs with AMX, float16 on CUDA, which needs a gradient ``scaler``),
    images in channels-last layout (the model should be too). A loss that does not depend on
    any trained parameter (nothing to learn from in this batch) is counted, not stepped.
    Returns the mean loss and the mean of each term (over all processes when distributed),
    the number of iterations and the seconds taken.
    """
    if (criterion is None) == (step is None):
        raise ValueError('give train_one_epoch a criterion or a step, not both')
    model.train()
    freeze_batch_norm_of_frozen_layers(model)
    total = len(loader) if max_iters is None else min(len(loader), max_iters)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # sum of losses, count
    term_sums: Dict[str, float] = {}
    start = time.monotonic()
    bar = tqdm(itertools.islice(loader, total), total=total, desc=desc, unit='it', leave=False,
               dynamic_ncols=True, disable=None if progress and is_main_process() else True)
    for iteration, (images, labels) in enumerate(bar):
        images = to_fast_layout(images.to(device, non_blocking=True))
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            if step is None:
                loss, terms = criterion(model(images), labels), {}
            else:
                loss, terms = step(model, images, labels, first_step + iteration)
        optimizer.zero_grad(set_to_none=True)
        if not loss.requires_grad:
            pass
        elif scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += torch.stack([loss.detach().double(), loss_sum.new_ones(())])
        for key, value in terms.items():
            value = value.detach() if torch.is_tensor(value) else value
            term_sums[key] = term_sums.get(key, 0.0) + float(value)
        if iteration % 10 == 0 or iteration == total - 1 or terms:  # .item() waits for the GPU
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(f'the loss became {value} at iteration {iteration} of '
                                    f'{desc}; lower `lr` or check the labels')
            bar.set_postfix(loss=f'{value:.4f}', lr=f'{optimizer.param_groups[0]["lr"]:.2e}')
    bar.close()
    all_reduce_sum(loss_sum)
    count = int(loss_sum[1].item())
    return {'loss': loss_sum[0].item() / count if count else math.nan, 'iters': total,
            'seconds': time.monotonic() - start,
            **{key: value / max(total, 1) for key, value in term_sums.items()}}


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device, num_classes: int,
             class_names: Sequence[str], *, amp_dtype: torch.dtype = torch.float32,
             progress: bool = True) -> Dict[str, object]:
    """mIoU, pixel accuracy and per-class IoU of ``model`` over ``loader``.

    Predictions are the argmax over the first ``num_classes`` outputs, compared with the
    loader's labels (255 ignored) at the size the loader gives. When distributed, each process
    passes its share of the data and the confusion matrices are summed.
    """
    model.eval()
    metrics = SegmentationMetrics(num_classes, class_names=class_names)
    bar = tqdm(loader, desc='val', unit='batch', leave=False, dynamic_ncols=True,
               disable=None if progress and is_main_process() else True)
    for images, labels in bar:
        with autocast(device, amp_dtype):
            logits = model(to_fast_layout(images.to(device, non_blocking=True))).float()
        prediction = logits[:, :num_classes].max(dim=1).indices
        for predicted, target in zip(prediction.cpu().numpy(), labels.numpy()):
            metrics.update(predicted, target)
    confusion = torch.from_numpy(metrics.confusion).to(device)
    metrics.confusion = all_reduce_sum(confusion).cpu().numpy().astype(np.int64)
    num_images = torch.tensor(metrics.num_images, device=device)
    metrics.num_images = int(all_reduce_sum(num_images).item())
    return metrics.compute()
