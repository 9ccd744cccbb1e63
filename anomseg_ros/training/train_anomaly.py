"""Fine-tune a learned anomaly score on a trained segmentation checkpoint::

    anomseg train-anomaly --method pebal --checkpoint CKPT --data CITYSCAPES --outliers DIR --out D
    anomseg train-anomaly --method sleeg --checkpoint CKPT --data CITYSCAPES --out DIR
    anomseg train-anomaly --method synboost --checkpoint CKPT --data CITYSCAPES --outliers DIR \
        --ensemble-tracks TRACK --out DIR

PEBAL (paper 004) adds an abstention output and fine-tunes the model's last block with
AnomalyMix outliers; SLEEG (paper 003) trains an OoD head on the frozen model with pasted
patches of the inlier images themselves; SynBoost (paper 002) trains a generator and a
dissimilarity network around the frozen model and grid-searches its ensemble. Each epoch
writes ``OUT/last.pt`` (``--resume`` it); it is a checkpoint that the node and ``anomseg
eval`` load, with ``scorer: pebal`` / ``sleeg`` / ``synboost``.

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
from anomseg_ros.methods.outliers import parse_scale
from anomseg_ros.pipeline import Detector, make_scorer, resolve_device
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
    if getattr(args, 'paste_scale', None) is not None:
        parse_scale(args.paste_scale)
    method.check(args)


def _stages(method, args):
    """The phases to run (``(name, epochs, lr)``), whether to run the finishing stage, and
    whether the stage asked for starts from nothing (``all`` or the first phase) rather than
    from OUT/last.pt, as ``--stage`` says (``all``: every phase, then the finish)."""
    phases = method.phases(args)
    names = [name for name, _, _ in phases]
    names += [method.finish_stage] if method.finish_stage else []
    stage = getattr(args, 'stage', 'all') or 'all'
    if stage != 'all' and stage not in names:
        raise ConfigError(f'{args.method} has the stages {", ".join(names)} (or all); got '
                          f'--stage {stage}')
    for name, epochs, lr in phases:
        if stage in ('all', name) and (epochs <= 0 or not lr or lr <= 0):
            raise ConfigError(f'phase {name} of {args.method} needs a positive number of epochs '
                              f'and learning rate, got {epochs} and {lr}')
    run = [p for p in phases if stage in ('all', p[0])]
    finish = bool(method.finish_stage) and stage in ('all', method.finish_stage)
    return run, finish, stage, stage in ('all', names[0])


def _same_base(saved_info: dict, info, last_path: str, checkpoint: str) -> None:
    """Refuse to continue ``last_path`` on another segmentation model than it was built on."""
    saved = saved_info.get('method_params', {}).get('base_hash')
    given = info.method_params.get('base_hash')
    if saved and given and saved != given:
        raise ConfigError(f'{last_path!r} was trained on another segmentation model than '
                          f'{checkpoint!r} (weights differ); give the checkpoint it was built '
                          f'on, or another --out')


def train_anomaly(args) -> int:
    """Train ``args.method`` on ``args.checkpoint`` as the options in ``args`` say (the
    ``anomseg train-anomaly`` options: epochs, iters_per_epoch, batch_size, lr, ... and the
    method's own); writes OUT/last.pt every epoch.

    A method trains in one or more phases (``Method.phases``), each with its own optimiser,
    and may end with a stage without gradients (``Method.finish``). ``--stage NAME`` re-runs
    one of them alone on OUT/last.pt; ``--resume`` continues where OUT/last.pt stopped."""
    method = get_method(args.method)
    if args.lr is None:
        args.lr = method.default_lr
    _check(method, args)
    phases, finish, stage, from_start = _stages(method, args)
    last_path = os.path.join(args.out, 'last.pt')
    if os.path.exists(last_path) and not args.resume and stage == 'all':
        raise ConfigError(f'{last_path!r} exists: continue it with --resume, re-run one stage '
                          f'with --stage, or choose another --out')
    if not from_start and not os.path.exists(last_path):
        raise ConfigError(f'--stage {stage} continues {last_path!r}, which does not exist: run '
                          f'the earlier stages first (or --stage all)')
    device = resolve_device(args.device)
    torch.manual_seed(args.seed)
    model, info, trainable = method.prepare(*_base_model(method, args.checkpoint), args)
    done, history, extra, saved = {}, [], {}, {}
    if os.path.exists(last_path) and (args.resume or stage != 'all'):
        saved = read_checkpoint(last_path)
        _same_base(saved.get('model_info', {}), info, last_path, args.checkpoint)
        try:
            model.load_state_dict(saved['model_state'])
        except RuntimeError:
            raise ConfigError(f'{last_path!r} holds a network built with other options than '
                              f'these (e.g. widths, --no-uncertainty, --features); give the same '
                              f'options, or another --out') from None
        history = list(saved.get('history', []))
        info.method_params.update(saved.get('model_info', {}).get('method_params', {}))
        done = dict(saved.get('phases_done', {}))
        extra = {k: saved[k] for k in ('ensemble',) if k in saved}
        if args.resume and 'phase' not in saved and phases:  # one-phase checkpoints before
            done[phases[0][0]] = int(saved['epoch'])
    model = to_fast_layout(model.to(device))  # channels-last, as the engine feeds it
    size_hw = args.input_size or info.input_size_hw
    crop_hw = args.crop_size or size_hw
    transform = TrainTransform(crop_hw, base_size_hw=size_hw, mean=info.mean, std=info.std)
    dataset = CityscapesDataset(args.data, 'train', transform=transform,
                                cache_dir=getattr(args, 'cache', None)) if phases else None
    generator = torch.Generator().manual_seed(args.seed)
    state = method.training_state(args, info, torch.Generator().manual_seed(args.seed + 1)) \
        if phases else None
    amp_dtype = resolve_amp(getattr(args, 'amp', 'off'), device)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
    print(f'{args.method} on {info.backbone} ({args.checkpoint}): {trainable:,} of '
          f'{count_parameters(model):,} parameters train, {precision_name(amp_dtype)}; '
          + (f'{len(dataset)} images, {args.iters_per_epoch} iterations of batch '
             f'{args.batch_size} per epoch; ' if phases else '')
          + 'stages: ' + ', '.join([p[0] for p in phases] + ([method.finish_stage] if finish
                                                             else [])), flush=True)
    started = time.monotonic()

    def save(phase: str, epoch: int) -> None:
        save_checkpoint(last_path, model, info, epoch=len(history), phase=phase,
                        phase_epoch=epoch, phases_done=done, history=history, **extra,
                        args={k: ('' if v is None else v) for k, v in vars(args).items()
                              if not callable(v) and k not in ('input_size', 'crop_size')},
                        **({'optimizer': optimizer.state_dict()} if optimizer else {}))

    optimizer = None
    for name, epochs, lr in phases:
        first = done.get(name, 0) + 1 if args.resume else 1
        if first > epochs:
            continue
        count = method.start_phase(model, name, fresh=first == 1)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        if args.resume and first > 1 and saved.get('phase', phases[0][0]) == name and \
                'optimizer' in saved:
            optimizer.load_state_dict(saved['optimizer'])
        if len(phases) > 1 or name != 'train':
            print(f'phase {name}: {count:,} parameters, epochs {first}-{epochs}, lr {lr:g}',
                  flush=True)
        loader = DataLoader(dataset, batch_size=args.batch_size, drop_last=True,
                            sampler=RandomSampler(dataset, generator=generator),
                            **worker_options(args.workers))
        for epoch in range(first, epochs + 1):
            generator.manual_seed(args.seed * 100_003 + epoch + 1_000 * len(done))
            tag = f'{name} ' if name != 'train' else ''
            stats = train_one_epoch(
                model, loader, optimizer, None, None, device,
                step=lambda m, images, labels, index: method.train_step(m, images, labels,
                                                                        state, index),
                first_step=(epoch - 1) * args.iters_per_epoch, max_iters=args.iters_per_epoch,
                amp_dtype=amp_dtype, scaler=scaler, desc=f'{tag}epoch {epoch}/{epochs}')
            means = {k: v for k, v in stats.items() if k not in ('iters', 'seconds')}
            history.append({'epoch': len(history) + 1, 'phase': name, 'phase_epoch': epoch,
                            **means, 'seconds': time.monotonic() - started})
            done[name] = epoch
            save(name, epoch)
            print(f'{tag}epoch {epoch}/{epochs}: ' +
                  ', '.join(f'{k} {v:.4f}' for k, v in means.items()), flush=True)
            if args.time_budget_min and (time.monotonic() - started) / 60 > args.time_budget_min:
                print(f'time budget used; continue with --resume (from {last_path})')
                return 0
    if finish:  # through the pipeline's own forward pass, as the node will run the model
        detector = Detector(model, info, make_scorer(method.scorer, info),
                            device=device.type, precision=precision_name(amp_dtype))
        extra.update(method.finish(model, info, args, detector.logits))
        save(method.finish_stage, 0)
    elif method.finish_stage and phases:
        print(f'the {method.finish_stage} stage was not run: run it again with --stage '
              f'{method.finish_stage} now that the earlier stages changed')
    print(f'wrote {last_path}; evaluate with: anomseg eval TRACK --weights {last_path} '
          f'--scorers {method.scorer},msp,maxlogit,energy')
    return 0
