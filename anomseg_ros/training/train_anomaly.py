"""Fine-tune a learned anomaly score on a trained segmentation checkpoint::

    anomseg train-anomaly --method pebal --checkpoint CKPT --data CITYSCAPES --outliers DIR --out D
    anomseg train-anomaly --method sleeg --checkpoint CKPT --data CITYSCAPES --out DIR

PEBAL (paper 004) adds an abstention output and fine-tunes the model's last block with
AnomalyMix outliers; SLEEG (paper 003) trains an OoD head on the frozen model with pasted
patches of the inlier images themselves. Each epoch writes ``OUT/last.pt`` (``--resume``
it); it is a checkpoint that the node and ``anomseg eval`` load, with ``scorer: pebal`` /
``sleeg``.

What differs between the methods is theirs (``anomseg_ros.methods``: building the model, the
training step); this module is the loop around it.
"""
import os
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from anomseg_ros.checkpoint import count_parameters, load_model, read_checkpoint, save_checkpoint
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.errors import ConfigError
from anomseg_ros.methods import get_method
from anomseg_ros.pipeline import resolve_device
from anomseg_ros.precision import precision_name, to_fast_layout
from anomseg_ros.training.engine import train_one_epoch
from anomseg_ros.training.train import load_init_weights, resolve_amp, worker_options
from anomseg_ros.training.transforms import TrainTransform


def _base_model(method, checkpoint: str):
    """The trained segmentation model the method builds on, with the outputs it needs."""
    if method.base_num_classes:
        base, info = load_init_weights(checkpoint, backbone=None,
                                       num_classes=method.base_num_classes)
    else:
        base, info = load_model(checkpoint)
    if info.method:
        raise ConfigError(f'{checkpoint!r} is already a {info.method} model; give the plain '
                          f'segmentation checkpoint')
    return base, info


def _check(method, args) -> None:
    for name in ('epochs', 'batch_size', 'iters_per_epoch'):
        if getattr(args, name) <= 0:
            raise ConfigError(f'--{name.replace("_", "-")} must be positive')
    method.check(args)


def train_anomaly(args) -> int:
    """Train ``args.method`` on ``args.checkpoint`` as the options in ``args`` say (the
    ``anomseg train-anomaly`` options: epochs, iters_per_epoch, batch_size, lr, ... and the
    method's own); writes OUT/last.pt every epoch."""
    method = get_method(args.method)
    _check(method, args)
    if args.lr is None:
        args.lr = method.default_lr
    last_path = os.path.join(args.out, 'last.pt')
    if os.path.exists(last_path) and not args.resume:
        raise ConfigError(f'{last_path!r} exists: continue it with --resume, or choose another '
                          f'--out')
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, info, trainable = method.prepare(*_base_model(method, args.checkpoint), args)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=args.lr)
    start_epoch, history = 1, []
    if args.resume:
        saved = read_checkpoint(last_path)
        model.load_state_dict(saved['model_state'])
        optimizer.load_state_dict(saved['optimizer'])
        start_epoch, history = int(saved['epoch']) + 1, list(saved.get('history', []))
    model = to_fast_layout(model.to(device))  # channels-last, as the engine feeds it
    size_hw = args.input_size or info.input_size_hw
    crop_hw = args.crop_size or size_hw
    transform = TrainTransform(crop_hw, base_size_hw=size_hw, mean=info.mean, std=info.std)
    dataset = CityscapesDataset(args.data, 'train', transform=transform,
                                cache_dir=getattr(args, 'cache', None))
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, drop_last=True,
                        sampler=RandomSampler(dataset, generator=generator),
                        **worker_options(args.workers))
    state = method.training_state(args, info, torch.Generator().manual_seed(args.seed + 1))
    amp_dtype = resolve_amp(getattr(args, 'amp', 'off'), device)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
    print(f'{args.method} on {info.backbone} ({args.checkpoint}): {trainable:,} of '
          f'{count_parameters(model):,} parameters train, {precision_name(amp_dtype)}; '
          f'{len(dataset)} images, '
          f'{args.iters_per_epoch} iterations of batch {args.batch_size} per epoch', flush=True)
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs + 1):
        generator.manual_seed(args.seed * 100_003 + epoch)
        stats = train_one_epoch(
            model, loader, optimizer, None, None, device,
            step=lambda m, images, labels, index: method.train_step(m, images, labels, state,
                                                                    index),
            first_step=(epoch - 1) * args.iters_per_epoch, max_iters=args.iters_per_epoch,
            amp_dtype=amp_dtype, scaler=scaler, desc=f'epoch {epoch}/{args.epochs}')
        means = {k: v for k, v in stats.items() if k not in ('iters', 'seconds')}
        history.append({'epoch': epoch, **means, 'seconds': time.monotonic() - started})
        save_checkpoint(last_path, model, info, optimizer=optimizer.state_dict(), epoch=epoch,
                        history=history, args={k: ('' if v is None else v)
                                               for k, v in vars(args).items()
                                               if not callable(v) and k != 'input_size'
                                               and k != 'crop_size'})
        print(f'epoch {epoch}/{args.epochs}: ' + ', '.join(f'{k} {v:.4f}'
                                                           for k, v in means.items()),
              flush=True)
        if args.time_budget_min and (time.monotonic() - started) / 60 > args.time_budget_min:
            print(f'time budget used; continue with --resume (from {last_path})')
            break
    print(f'wrote {last_path}; evaluate with: anomseg eval TRACK --weights {last_path} '
          f'--scorers {method.scorer},msp,maxlogit,energy')
    return 0
