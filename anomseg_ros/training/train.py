"""Train a segmentation backbone on Cityscapes (19 trainIds), as torchvision's
``references/segmentation/train.py`` does::

    train(TrainConfig(data='CITYSCAPES', out='runs/erfnet', epochs=150, batch_size=6))
    anomseg train --data CITYSCAPES --out runs/erfnet --epochs 150 --batch-size 6
    torchrun --nproc_per_node=N -m anomseg_ros.cli.train --data CITYSCAPES --out ...

Every epoch ends with a validation mIoU and ``OUT/last.pt``; a new best mIoU also writes
``OUT/best.pt``. Both are anomseg_ros checkpoints that ``anomseg detect --weights`` and the node
load as they are, and ``--resume OUT/last.pt`` continues from.
"""
import os
import random
import time
from typing import Callable, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import (DataLoader, DistributedSampler, RandomSampler, Subset,
                              WeightedRandomSampler)

from anomseg_ros.backbones import (check_input_size, create_backbone, pretrained_cfg,
                                   with_num_classes)
from anomseg_ros.backbones.heads import WithIsoMaxPlus
from anomseg_ros.backbones.resnet import load_pretrained_backbone
from anomseg_ros.checkpoint import (count_parameters, load_model, ModelInfo, read_checkpoint,
                                    save_checkpoint)
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.errors import CheckpointError, ConfigError, TrainingError
from anomseg_ros.labels import CITYSCAPES_CLASSES, NUM_CITYSCAPES_CLASSES
from anomseg_ros.pipeline import resolve_device
from anomseg_ros.precision import precision_name, resolve_precision
from anomseg_ros.training import distributed as dist
from anomseg_ros.training.config import TrainConfig
from anomseg_ros.training.engine import (evaluate, make_optimizer,
                                         make_poly_scheduler, restore_scheduler, train_one_epoch)
from anomseg_ros.training.losses import (enet_class_weights, label_histogram, make_criterion,
                                         needs_isomax_head, parse_loss_spec)
from anomseg_ros.training.transforms import EvalTransform, TrainTransform

DEFAULT_INPUT_SIZE_HW = (256, 512)
MULTI_GPU_HELP = ('Multi-GPU: torchrun --nproc_per_node=N -m anomseg_ros.cli.train ARGS '
                  '(one process per GPU, DistributedDataParallel; --batch-size is per GPU).')


def log(*values) -> None:
    """Print in the main process only."""
    if dist.is_main_process():
        print(*values, flush=True)


def get_dataset(root: str, split: str, transform, *, cache_dir=None) -> CityscapesDataset:
    """Cityscapes ``split`` under ``root`` whose items go through ``transform`` (decoded once
    into ``cache_dir`` when given)."""
    return CityscapesDataset(root, split, transform=transform, cache_dir=cache_dir)


def get_transform(train: bool, *, size_hw, mean, std, crop_size_hw=None,
                  class_uniform: float = 0.0):
    """Random scale / crop / flip / colour jitter for training (crops of ``crop_size_hw`` at
    the object scale of ``size_hw``, centred on a uniformly drawn class with probability
    ``class_uniform``); resize to ``size_hw`` only for validation."""
    if train:
        return TrainTransform(crop_size_hw or size_hw, base_size_hw=size_hw, mean=mean, std=std,
                              class_uniform=class_uniform)
    return EvalTransform(size_hw, mean=mean, std=std)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of training for ``--amp`` on ``device``."""
    return resolve_precision('fp32' if amp == 'off' else amp, device)


def _worker_init(worker_id: int) -> None:
    cv2.setNumThreads(1)  # torch already runs one thread per worker


def worker_options(workers: int) -> dict:
    """DataLoader options for ``workers`` loading processes, started by a fork server: a
    worker forked straight from a process whose OpenMP threads have run (a training after an
    evaluation in one process, as ``anomseg study`` does) can hang on a lock for good."""
    if workers <= 0:
        return {'num_workers': 0}
    return {'num_workers': workers, 'multiprocessing_context': 'forkserver',
            'worker_init_fn': _worker_init}


class _LabelCounts(torch.utils.data.Dataset):
    """Per-image class histograms of a dataset's labels (read in DataLoader workers)."""

    def __init__(self, dataset: CityscapesDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> np.ndarray:
        return label_histogram([self.dataset.load_label(index)], NUM_CITYSCAPES_CLASSES)


def image_histograms(dataset: CityscapesDataset, *, workers: int) -> np.ndarray:
    """``(N, 20)`` pixel counts of the 19 classes and the ignored pixels, per training label."""
    log(f'counting the pixels of {len(dataset)} training labels')
    loader = DataLoader(_LabelCounts(dataset), batch_size=None, **worker_options(workers))
    return np.stack([np.asarray(counts) for counts in loader])


def compute_class_weights(dataset: CityscapesDataset, *, workers: int,
                          void: bool = False, histograms: Optional[np.ndarray] = None
                          ) -> torch.Tensor:
    """ERFNet's class weights from the pixel histogram of every label of ``dataset``; with
    ``void``, a 20th weight for the ignored pixels, trained as the void class."""
    if histograms is None:
        histograms = image_histograms(dataset, workers=workers)
    return enet_class_weights(histograms.sum(axis=0), NUM_CITYSCAPES_CLASSES + int(void))


def repeat_factors(histograms: np.ndarray, threshold: float) -> np.ndarray:
    """Repeat-factor sampling (Gupta et al., LVIS, 2019) for images: a class seen in a
    fraction f of the images gets r = max(1, sqrt(threshold / f)), an image the largest r of
    the classes it shows, and images are drawn in proportion to r. With threshold 0.1 a
    class in 2.5% of the images is drawn twice as often; classes in more than 10%, as before."""
    present = histograms[:, :NUM_CITYSCAPES_CLASSES] > 0
    fraction = present.mean(axis=0)
    # a class in no image is never present, so its (guarded) factor is never used
    per_class = np.maximum(1.0, np.sqrt(threshold / np.maximum(fraction, 1e-12)))
    return np.where(present, per_class, 1.0).max(axis=1)


def load_init_weights(path: str, *, backbone: str,
                      num_classes: int = NUM_CITYSCAPES_CLASSES) -> tuple:
    """A plain (linear-head) model with ``num_classes`` outputs (19, or 20 with void) from
    checkpoint ``path``: a classifier with more outputs (the public ERFNet's void channel 19)
    keeps its first ones; one with fewer keeps them and starts the rest untrained."""
    source, source_info = load_model(path, backbone=backbone)
    if source_info.head != 'linear':
        source = source.backbone  # the features under a distance head; the head is new
    if list(source_info.class_names[:NUM_CITYSCAPES_CLASSES]) != CITYSCAPES_CLASSES or \
            source_info.num_classes < NUM_CITYSCAPES_CLASSES:
        raise CheckpointError(f'{path!r} has {source_info.num_classes} outputs whose first 19 '
                              f'are not the Cityscapes classes; `init_weights` needs a model '
                              f'trained on Cityscapes trainIds')
    if source_info.num_classes == num_classes:
        return source, source_info
    model, _ = with_num_classes(source, source_info.backbone, num_classes)
    return model, source_info


def freeze_unused_parameters(model: torch.nn.Module, device: torch.device) -> list:
    """Stop training the parameters that get no gradient from ``model(x)`` (ERFNet's
    encoder-only classifier), as DistributedDataParallel requires; returns their names."""
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # the training graph (with auxiliary heads); batch statistics restored below
    outputs = model(torch.zeros(2, 3, 64, 64, device=device))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    sum(o.float().sum() for o in outputs).backward()
    model.load_state_dict(buffers)
    unused = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for name, parameter in model.named_parameters():
        parameter.grad = None
        if name in unused:
            parameter.requires_grad_(False)
    return unused


def _data_loaders(args, train_set, val_set, device: torch.device, generator: torch.Generator,
                  image_weights: Optional[np.ndarray] = None):
    world = dist.world_size()
    if dist.is_distributed():
        sampler = DistributedSampler(train_set, shuffle=True, seed=args.seed, drop_last=True)
    elif image_weights is not None:
        sampler = WeightedRandomSampler(image_weights.tolist(), len(train_set),
                                        replacement=True, generator=generator)
    else:
        sampler = RandomSampler(train_set, generator=generator)
    common = dict(pin_memory=device.type == 'cuda', generator=generator,
                  **worker_options(args.workers))
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler,
                              drop_last=len(train_set) >= args.batch_size * world, **common)
    # each process validates every world-th image; the confusion matrices are summed
    val_shard = Subset(val_set, range(dist.rank(), len(val_set), world))
    val_loader = DataLoader(val_shard, batch_size=args.batch_size, shuffle=False, **common)
    return train_loader, val_loader


def _start_state(args, say) -> tuple:
    """Model, ModelInfo and the training state to resume from (or None)."""
    resume = None
    num_classes = NUM_CITYSCAPES_CLASSES + int(args.void)
    head = 'isomax+' if needs_isomax_head(args.loss) else 'linear'
    if args.resume:
        resume = read_checkpoint(args.resume)
        if not {'optimizer', 'scheduler', 'epoch'} <= set(resume):
            raise TrainingError(f'{args.resume!r} holds no training state (optimizer, scheduler,'
                                f' epoch); use it as `init_weights` to start a new training')
        model, source_info = load_model(args.resume)
        if (source_info.num_classes, source_info.head) != (num_classes, head):
            raise ConfigError(f'{args.resume!r} was trained with {source_info.num_classes} '
                              f'outputs and a {source_info.head} head; resume it with the same '
                              f'`loss` and `void` as then')
    elif args.init_weights:
        model, source_info = load_init_weights(args.init_weights, backbone=args.backbone,
                                               num_classes=num_classes)
    else:
        torch.manual_seed(args.seed)
        model, source_info = create_backbone(args.backbone, num_classes=num_classes), None
        if args.pretrained_backbone:
            if not model.has_pretrained_encoder:
                raise ConfigError(f'`pretrained_backbone` loads self-supervised ResNet-50 '
                                  f'weights; backbone {args.backbone!r} takes none')
            fmt = load_pretrained_backbone(model, args.pretrained_backbone, args.ssl_format)
            say(f'backbone: {args.pretrained_backbone} read as {fmt}')
    if head == 'isomax+' and not resume and not isinstance(model, WithIsoMaxPlus):
        torch.manual_seed(args.seed)
        model = WithIsoMaxPlus(model, num_classes)
        if args.init_weights:  # a trained segmenter keeps its argmax under the new head
            model.head.keep_argmax()
    size_hw = args.input_size or (source_info.input_size_hw if resume else DEFAULT_INPUT_SIZE_HW)
    backbone = source_info.backbone if source_info else args.backbone
    check_input_size(backbone, size_hw, 'the input size (`input_size`)')
    if args.crop_size is not None:
        check_input_size(backbone, args.crop_size, 'the crop size (`crop_size`)')
    # a new training sees images as its backbone's public weights do, unless told otherwise
    cfg = source_info if source_info else pretrained_cfg(backbone)
    info = ModelInfo(
        backbone=backbone,
        num_classes=num_classes, class_names=list(CITYSCAPES_CLASSES),
        void_channel=NUM_CITYSCAPES_CLASSES if args.void else None, head=head,
        mean=tuple(args.mean or cfg.mean), std=tuple(args.std or cfg.std),
        input_size_hw=tuple(size_hw), pretrained=True)
    if args.freeze_backbone:
        frozen = freeze_backbone(model)
        say(f'`freeze_backbone`: training {count_parameters(model, trainable_only=True):,} '
            f'parameters, {frozen:,} frozen')
    return model, info, resume


def freeze_backbone(model: torch.nn.Module) -> int:
    """Stop training everything but the classifier (the ResNet-50 head of paper 000 Tables 5
    and 6, and any distance head); returns the number of parameters frozen."""
    core = model.backbone if isinstance(model, WithIsoMaxPlus) else model
    if not core.has_pretrained_encoder:
        raise ConfigError(f'`freeze_backbone` needs a backbone with a pretrained feature '
                          f'extractor (resnet50); {type(core).__name__} has none')
    frozen = 0
    for parameter in core.backbone_parameters():
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    return frozen


def _check_args(args: TrainConfig) -> None:
    for name in ('epochs', 'batch_size', 'max_iters_per_epoch', 'val_limit', 'time_budget_min'):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f'`{name}` must be positive, got {value}')
    if args.workers < 0 or args.lr <= 0:
        raise ConfigError(f'`workers` must be >= 0 and `lr` positive, got {args.workers} and '
                          f'{args.lr}')
    if args.crop_size is not None:  # (and a multiple of the backbone's: _start_state)
        check_input_size('', args.crop_size, 'the crop size (`crop_size`)')
    if args.resume and args.init_weights:
        raise ConfigError('give `resume` (continue a training) or `init_weights` (start from '
                          'trained weights), not both')
    if args.pretrained_backbone and (args.resume or args.init_weights):
        raise ConfigError('`pretrained_backbone` starts a new ResNet-50 from self-supervised '
                          'weights; it does not go with `resume` or `init_weights`')
    if args.repeat_threshold < 0 or args.repeat_threshold > 1:
        raise ConfigError(f'`repeat_threshold` is a fraction of the images in [0, 1] (0: off), '
                          f'got {args.repeat_threshold}')
    if args.repeat_threshold and dist.is_distributed():
        raise ConfigError('`repeat_threshold` works in single-process training; drop it, or '
                          'train in one process')
    parse_loss_spec(args.loss)  # a readable error before any data is read


def train(config: TrainConfig, *, say: Optional[Callable[[str], None]] = None) -> int:
    """Train as ``config`` says; returns 0. Raises AnomsegError subclasses for user errors
    (``anomseg train`` prints them in one line). Progress goes to ``say`` in the main process,
    a line at a time (fields named in backquotes, as the errors name them)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f'train() takes a TrainConfig, got {type(config).__name__}')
    args = config
    _check_args(args)
    last_path, best_path = os.path.join(args.out, 'last.pt'), os.path.join(args.out, 'best.pt')
    if not args.resume and os.path.exists(last_path):
        raise ConfigError(f'{last_path!r} exists: continue it with `resume` {last_path}, or '
                          f'choose another `out`')
    device = dist.init_distributed(resolve_device(args.device))
    try:
        return _train(args, device, last_path, best_path,
                      lambda line: dist.is_main_process() and (say or log)(line))
    finally:
        dist.shutdown_distributed()


def _train(args, device: torch.device, last_path: str, best_path: str, say) -> int:
    started = time.monotonic()
    random.seed(args.seed)
    np.random.seed(args.seed)
    model, info, resume = _start_state(args, say)
    train_set = get_dataset(args.data, 'train', get_transform(
        True, size_hw=info.input_size_hw, mean=info.mean, std=info.std,
        crop_size_hw=args.crop_size, class_uniform=args.class_uniform), cache_dir=args.cache)
    val_set = get_dataset(args.data, 'val', get_transform(
        False, size_hw=info.input_size_hw, mean=info.mean, std=info.std))
    if args.val_limit:
        val_set = Subset(val_set, range(min(args.val_limit, len(val_set))))
    generator = torch.Generator()
    histograms, image_weights = None, None  # the histograms serve the class weights too
    if args.repeat_threshold:
        histograms = image_histograms(train_set, workers=args.workers)
        image_weights = repeat_factors(histograms, args.repeat_threshold)
        say(f'repeat-factor sampling (threshold {args.repeat_threshold:g}): '
            f'{int((image_weights > 1).sum())} of {len(image_weights)} images drawn more often, '
            f'up to {image_weights.max():.2f}x')
    train_loader, val_loader = _data_loaders(args, train_set, val_set, device, generator,
                                             image_weights)
    iters_per_epoch = len(train_loader)
    if args.max_iters_per_epoch:
        iters_per_epoch = min(iters_per_epoch, args.max_iters_per_epoch)
    if iters_per_epoch == 0:
        raise ConfigError(f'no training iteration: {len(train_set)} training images, batch size '
                          f'{args.batch_size}')

    class_weights = None
    if args.class_weights:
        if resume is not None and resume.get('class_weights'):
            class_weights = torch.tensor(resume['class_weights'], dtype=torch.float32)
        else:
            class_weights = torch.zeros(info.num_classes)
            if dist.is_main_process():
                class_weights = compute_class_weights(train_set, workers=args.workers,
                                                      void=args.void, histograms=histograms)
            class_weights = dist.broadcast(class_weights.to(device)).cpu()
        say('class weights: ' + ' '.join(f'{w:.2f}' for w in class_weights.tolist()))
    criterion = make_criterion(
        args.loss, class_weights=None if class_weights is None else class_weights.to(device),
        void_class=info.void_channel, aux_weight=getattr(model, 'aux_weight', 1.0),
        options={'focal': {'gamma': args.focal_gamma}, 'logitnorm': {'tau': args.logitnorm_tau},
                 'eiml': {'entropic_scale': args.entropic_scale}})

    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # every batch has the same size
    model.to(device, memory_format=torch.channels_last)  # oneDNN's and cuDNN's fast layout
    model_without_ddp = model
    if dist.is_distributed():
        frozen = freeze_unused_parameters(model, device)
        if frozen:
            say(f'not trained (the forward pass does not use them): {", ".join(frozen)}')
        if args.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model_without_ddp = model
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == 'cuda' else None)
    optimizer = make_optimizer(model_without_ddp, lr=args.lr)
    scheduler = make_poly_scheduler(optimizer, iters_per_epoch * args.epochs)
    amp_dtype = resolve_amp(args.amp, device)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None

    start_epoch, best_miou, history = 1, float('-inf'), []
    if resume is not None:
        optimizer.load_state_dict(resume['optimizer'])
        restore_scheduler(scheduler, resume['scheduler'])
        if scaler is not None and resume.get('scaler'):
            scaler.load_state_dict(resume['scaler'])
        start_epoch = int(resume['epoch']) + 1
        best_miou = float(resume.get('best_miou', float('-inf')))
        history = list(resume.get('history', []))
        say(f'resuming {args.resume!r} after epoch {start_epoch - 1} (best mIoU so far '
            f'{100 * max(best_miou, 0.0):.2f}%)')
    say(f'{info.backbone}: {count_parameters(model_without_ddp) / 1e6:.2f} M parameters '
        f'({info.num_classes} outputs, {args.loss} loss) on {device}'
        f'{" x " + str(dist.world_size()) if dist.is_distributed() else ""}'
        f', {precision_name(amp_dtype)}; input {info.input_size_hw[1]}x'
        f'{info.input_size_hw[0]}; {len(train_set)} train / {len(val_set)} val images; '
        f'{iters_per_epoch} iterations of batch {args.batch_size} per epoch')
    if start_epoch > args.epochs:
        say(f'{args.resume!r} has already trained {start_epoch - 1} epochs; '
            f'raise `epochs` to train more')
        return 0

    epoch, saved = start_epoch, None
    try:
        for epoch in range(start_epoch, args.epochs + 1):
            generator.manual_seed(args.seed * 100_003 + epoch)  # an epoch's data order and
            if isinstance(train_loader.sampler, DistributedSampler):  # augmentation do not
                train_loader.sampler.set_epoch(epoch)                # depend on a resume
            stats = train_one_epoch(model, train_loader, optimizer, scheduler, criterion,
                                    device, amp_dtype=amp_dtype, scaler=scaler,
                                    max_iters=iters_per_epoch,
                                    desc=f'epoch {epoch}/{args.epochs}')
            val_start = time.monotonic()
            dist.broadcast_buffers(model_without_ddp)
            metrics = evaluate(model_without_ddp, val_loader, device, info.num_inlier_classes,
                               info.class_names, amp_dtype=amp_dtype)
            seconds = stats['seconds'] + time.monotonic() - val_start
            history.append({'epoch': epoch, 'loss': stats['loss'], 'miou': metrics['miou'],
                            'pixel_accuracy': metrics['pixel_accuracy'],
                            'per_class_iou': metrics['per_class_iou'], 'seconds': seconds,
                            'iters': stats['iters'], 'lr': optimizer.param_groups[0]['lr']})
            is_best = metrics['miou'] > best_miou  # False for NaN
            best_miou = metrics['miou'] if is_best else best_miou
            if dist.is_main_process():
                extra = dict(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                             epoch=epoch, args=args.options(), best_miou=best_miou,
                             history=history, class_weights=None if class_weights is None
                             else class_weights.tolist())
                if scaler is not None:
                    extra['scaler'] = scaler.state_dict()
                save_checkpoint(last_path, model_without_ddp, info, **extra)
                if is_best:
                    save_checkpoint(best_path, model_without_ddp, info, **extra)
            saved = epoch
            say(f'epoch {epoch}/{args.epochs}: loss {stats["loss"]:.4f}, val mIoU '
                f'{100 * metrics["miou"]:.2f}% (pixel accuracy '
                f'{100 * metrics["pixel_accuracy"]:.1f}%), {seconds:.0f} s'
                f'{", new best" if is_best else ""}')
            minutes = (time.monotonic() - started) / 60
            if args.time_budget_min and minutes > args.time_budget_min and epoch < args.epochs:
                say(f'time budget of {args.time_budget_min} min used ({minutes:.1f} min): '
                    f'stopping after epoch {epoch}; continue with `resume` {last_path}')
                break
    except KeyboardInterrupt:
        path = last_path if saved else args.resume
        say(f'\ninterrupted in epoch {epoch}; {path} holds epoch {saved or start_epoch - 1}, '
            f'continue with `resume` {path}' if path else
            '\ninterrupted in epoch 1, before any checkpoint was written')
        raise
    _report_best(history)
    return 0


def _report_best(history: list) -> None:
    scored = [h for h in history if h['miou'] == h['miou']]  # leave out NaN
    if not scored:
        return
    best = max(scored, key=lambda h: h['miou'])
    log(f'best epoch {best["epoch"]}: mIoU {100 * best["miou"]:.2f}%; IoU per class:')
    for name, iou in best['per_class_iou'].items():
        log(f'  {name:<14} {100 * iou:6.2f}' if iou == iou else f'  {name:<14}    n/a')
