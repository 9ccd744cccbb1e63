"""Fine-tune a learned anomaly score on a trained segmentation checkpoint::

    anomseg train-anomaly --method pebal --checkpoint CKPT --data CITYSCAPES --outliers DIR --out D
    anomseg train-anomaly --method sleeg --checkpoint CKPT --data CITYSCAPES --out DIR

PEBAL (paper 004) adds an abstention output and fine-tunes the model's last block with
AnomalyMix outliers; SLEEG (paper 003) trains an OoD head on the frozen model with pasted
patches of the inlier images themselves. Each epoch writes ``OUT/last.pt`` (``--resume`` it);
it is a checkpoint that the node and ``anomseg eval`` load, with ``scorer: pebal`` / ``sleeg``.
"""
import argparse
import dataclasses
import math
import os
import time

import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from anomseg_ros.checkpoint import count_parameters, load_model, read_checkpoint, save_checkpoint
from anomseg_ros.cli.common import parse_size
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.errors import ConfigError, TrainingError
from anomseg_ros.labels import NUM_CITYSCAPES_CLASSES
from anomseg_ros.methods import pebal, sleeg
from anomseg_ros.methods.outliers import load_outliers, paste_outliers
from anomseg_ros.pipeline import DEVICES, resolve_device
from anomseg_ros.training.engine import freeze_batch_norm_of_frozen_layers
from anomseg_ros.training.train import worker_options
from anomseg_ros.training.transforms import TrainTransform

METHODS = ('pebal', 'sleeg')


def _pebal_model(args):
    from anomseg_ros.training.train import load_init_weights
    base, base_info = load_init_weights(args.checkpoint, backbone=None,
                                        num_classes=NUM_CITYSCAPES_CLASSES)
    if base_info.method:
        raise ConfigError(f'{args.checkpoint!r} is already a {base_info.method} model; give '
                          f'the plain segmentation checkpoint')
    if base_info.backbone not in pebal.LAST_BLOCK:
        raise ConfigError(f'PEBAL does not know the last block of {base_info.backbone!r}; it '
                          f'knows {", ".join(pebal.LAST_BLOCK)}')
    model = pebal.add_abstention_output(base, base_info.backbone)
    trainable = pebal.freeze_all_but_last_block(model, base_info.backbone)
    info = dataclasses.replace(base_info, num_classes=NUM_CITYSCAPES_CLASSES + 1,
                               class_names=list(base_info.class_names[:NUM_CITYSCAPES_CLASSES]),
                               void_channel=None, head='linear', method='pebal',
                               method_params={'kernel_size': args.kernel_size,
                                              'sigma': args.sigma},
                               temperature=1.0, source='')
    return model, info, trainable


def _sleeg_model(args):
    base, base_info = load_model(args.checkpoint)
    if base_info.method:
        raise ConfigError(f'{args.checkpoint!r} is already a {base_info.method} model; give '
                          f'the plain segmentation checkpoint')
    for parameter in base.parameters():
        parameter.requires_grad_(False)
    with torch.no_grad():
        channels = base.eval().forward_features(torch.zeros(1, 3, 64, 64)).shape[1] \
            if hasattr(base, 'forward_features') else None
    head = {'in_channels': channels, 'mid_channels': args.head_channels}
    model = sleeg.SleegModel(base, **head)
    info = dataclasses.replace(base_info, num_classes=base_info.num_classes + 2,
                               method='sleeg', source='',
                               method_params={'lam': args.lam, 'estimators': args.estimators,
                                              'head': head})
    return model, info, count_parameters(model.head)


def _check(args) -> None:
    if args.method == 'pebal' and not args.outliers:
        raise ConfigError('PEBAL trains on outliers pasted into inlier images (AnomalyMix): '
                          'give --outliers DIR (RGBA cut-outs, e.g. anomseg synth\'s outliers/)')
    for name in ('epochs', 'batch_size', 'iters_per_epoch'):
        if getattr(args, name) <= 0:
            raise ConfigError(f'--{name.replace("_", "-")} must be positive')
    sleeg.parse_estimators(args.estimators)


def main(args: argparse.Namespace) -> int:
    _check(args)
    last_path = os.path.join(args.out, 'last.pt')
    if os.path.exists(last_path) and not args.resume:
        raise ConfigError(f'{last_path!r} exists: continue it with --resume, or choose another '
                          f'--out')
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, info, trainable = (_pebal_model if args.method == 'pebal' else _sleeg_model)(args)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad],
                                 lr=args.lr)
    start_epoch, history = 1, []
    if args.resume:
        saved = read_checkpoint(last_path)
        model.load_state_dict(saved['model_state'])
        optimizer.load_state_dict(saved['optimizer'])
        start_epoch, history = int(saved['epoch']) + 1, list(saved.get('history', []))
    model.to(device)
    size_hw = args.input_size or info.input_size_hw
    crop_hw = args.crop_size or size_hw
    transform = TrainTransform(crop_hw, base_size_hw=size_hw, mean=info.mean, std=info.std)
    dataset = CityscapesDataset(args.data, 'train', transform=transform)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, drop_last=True,
                        sampler=RandomSampler(dataset, generator=generator),
                        **worker_options(args.workers))
    mean = torch.tensor(info.mean).view(3, 1, 1)
    std = torch.tensor(info.std).view(3, 1, 1)
    outliers = load_outliers(args.outliers) if args.method == 'pebal' else None
    criterion = pebal.PebalLoss(NUM_CITYSCAPES_CLASSES, lam=args.pebal_lambda,
                                fixed_penalty=args.fixed_penalty,
                                regulariser=not args.no_regulariser, reg_form=args.reg_form)
    paste_rng = torch.Generator().manual_seed(args.seed + 1)
    library = sleeg.PatchLibrary(num_patches=args.num_patches, shape=args.patch_shape,
                                 generator=paste_rng)
    estimators = sleeg.parse_estimators(args.estimators)
    total_iters = args.epochs * args.iters_per_epoch
    warmup_iters = round(args.warmup * total_iters)
    print(f'{args.method} on {info.backbone} ({args.checkpoint}): {trainable:,} of '
          f'{count_parameters(model):,} parameters train; {len(dataset)} images, '
          f'{args.iters_per_epoch} iterations of batch {args.batch_size} per epoch', flush=True)
    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs + 1):
        generator.manual_seed(args.seed * 100_003 + epoch)
        model.train()
        freeze_batch_norm_of_frozen_layers(model)
        sums, count = {}, 0
        bar = tqdm(loader, total=args.iters_per_epoch, desc=f'epoch {epoch}/{args.epochs}',
                   leave=False, disable=None)
        for iteration, (images, labels) in enumerate(bar):
            if iteration >= args.iters_per_epoch:
                break
            images, labels = images.to(device), labels.to(device)
            step = (epoch - 1) * args.iters_per_epoch + iteration
            if args.method == 'pebal':
                paste_outliers(images, labels, outliers, label=NUM_CITYSCAPES_CLASSES,
                               mean=mean, std=std, generator=paste_rng,
                               probability=args.mix_probability)
                terms = criterion.terms(model(images), labels)
                loss = terms['pal'] + criterion.lam * (terms['ebm_in'] + terms['ebm_out']) + \
                    terms['reg']
            else:
                library.update(images)
                pasted = library.paste(images)
                outputs = model(images)
                terms = sleeg.sleeg_losses(outputs, pasted, info.num_inlier_classes,
                                           estimators=estimators, refine=not args.no_refinement,
                                           warmup=step < warmup_iters, lam=args.lam,
                                           gamma=args.margin,
                                           dynamic_margin=not args.static_margin)
                terms.pop('target')
                loss = terms['tae'] + terms['tore']
            if not math.isfinite(loss.item()):
                raise TrainingError(f'the loss became {loss.item()} at iteration {iteration} '
                                    f'of epoch {epoch}; lower --lr')
            optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                optimizer.step()
            for key, value in terms.items():
                value = value.item() if torch.is_tensor(value) else value
                sums[key] = sums.get(key, 0.0) + value
            sums['loss'] = sums.get('loss', 0.0) + loss.item()
            count += 1
            bar.set_postfix(loss=f'{loss.item():.4f}')
        bar.close()
        means = {k: v / max(count, 1) for k, v in sums.items()}
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
          f'--scorers {args.method},msp,maxlogit,energy')
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument('--method', required=True, choices=METHODS)
    parser.add_argument('--checkpoint', required=True, metavar='CKPT',
                        help='the trained segmentation model to build on')
    parser.add_argument('--data', required=True, metavar='ROOT',
                        help='inlier training images: a Cityscapes-layout root')
    parser.add_argument('--out', required=True, metavar='DIR')
    parser.add_argument('--epochs', type=int, default=20, help='(default 20, as PEBAL)')
    parser.add_argument('--iters-per-epoch', type=int, default=200)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--lr', type=float, default=None,
                        help='Adam learning rate (default: PEBAL 1e-5 as its paper; SLEEG '
                        '1e-3 for the new head, which paper 003 does not state)')
    parser.add_argument('--input-size', type=parse_size, default=None, metavar='WxH',
                        help='the scale images are brought to (default: the checkpoint\'s)')
    parser.add_argument('--crop-size', type=parse_size, default=None, metavar='WxH')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--device', default='auto', choices=DEVICES)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--resume', action='store_true', help='continue OUT/last.pt')
    parser.add_argument('--time-budget-min', type=float, default=None)
    group = parser.add_argument_group('PEBAL (paper 004)')
    group.add_argument('--outliers', default=None, metavar='DIR',
                       help='outlier cut-outs for AnomalyMix: RGBA images, or images/ + masks/')
    group.add_argument('--mix-probability', type=float, default=0.5,
                       help='share of training images that get an outlier pasted')
    group.add_argument('--pebal-lambda', type=float, default=pebal.LAMBDA)
    group.add_argument('--fixed-penalty', type=float, default=None, metavar='A',
                       help='ablation: a constant abstention penalty instead of (-E)^2')
    group.add_argument('--no-regulariser', action='store_true',
                       help='ablation: without the smoothness / sparsity term (eq. 8)')
    group.add_argument('--reg-form', default='paper', choices=pebal.REG_FORMS,
                       help='eq. 8 as printed (default), or as the authors\' code computes it')
    group.add_argument('--kernel-size', type=int, default=7, help='inference smoothing')
    group.add_argument('--sigma', type=float, default=1.0, help='inference smoothing')
    group = parser.add_argument_group('SLEEG (paper 003)')
    group.add_argument('--estimators', default='tae+tore',
                       help='ablation: tae, tore or tae+tore (default)')
    group.add_argument('--patch-shape', default='convex', choices=('convex', 'square'))
    group.add_argument('--no-refinement', action='store_true',
                       help='ablation: every pasted pixel is an anomaly')
    group.add_argument('--static-margin', action='store_true',
                       help='ablation: margin gamma without the JEM terms (Table 4)')
    group.add_argument('--num-patches', type=int, default=sleeg.NUM_PATCHES)
    group.add_argument('--margin', type=float, default=sleeg.GAMMA)
    group.add_argument('--lam', type=float, default=sleeg.LAMBDA)
    group.add_argument('--warmup', type=float, default=0.15,
                       help='share of the iterations that refine with the JEM score (paper: '
                       '6,000 of 40,000)')
    group.add_argument('--head-channels', type=int, default=32)
    return parser


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    if args.lr is None:
        args.lr = 1e-5 if args.method == 'pebal' else 1e-3
    return args
