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

From Python, the run is an ``AnomalyTrainConfig`` and the method's own options its
``Options`` dataclass (defaults where left out)::

    from anomseg_ros.methods.synboost.method import SynboostOptions
    from anomseg_ros.training.config import AnomalyTrainConfig
    train_anomaly(AnomalyTrainConfig(method='synboost', checkpoint=CKPT, data=ROOT, out=DIR,
                                     outliers=CUTOUTS),
                  SynboostOptions(ensemble_tracks=TRACK))

What differs between the methods is theirs (``anomseg_ros.methods``: building the model, the
training step, the options); this module is the loop around it.
"""
import dataclasses
import os
import time
from typing import Callable

import torch
from torch.utils.data import DataLoader, RandomSampler

from anomseg_ros.checkpoint import count_parameters, load_model, read_checkpoint, save_checkpoint
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.errors import ConfigError
from anomseg_ros.methods import get_method
from anomseg_ros.options import to_plain
from anomseg_ros.pipeline import Detector, make_scorer, resolve_device
from anomseg_ros.precision import precision_name, to_fast_layout
from anomseg_ros.training.config import AnomalyTrainConfig
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


def _stages(method, config, options):
    """The phases to run (``(name, epochs, lr)``), whether to run the finishing stage, and
    whether the stage asked for starts from nothing (``all`` or the first phase) rather than
    from OUT/last.pt, as ``config.stage`` says (``all``: every phase, then the finish)."""
    phases = method.phases(config, options)
    names = [name for name, _, _ in phases]
    names += [method.finish_stage] if method.finish_stage else []
    stage = config.stage or 'all'
    if stage != 'all' and stage not in names:
        raise ConfigError(f'{config.method} has the stages {", ".join(names)} (or all); got '
                          f'`stage` {stage}')
    for name, epochs, lr in phases:
        if stage in ('all', name) and (epochs <= 0 or not lr or lr <= 0):
            raise ConfigError(f'phase {name} of {config.method} needs a positive number of epochs '
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
                          f'{checkpoint!r} (weights differ); give the `checkpoint` it was built '
                          f'on, or another `out` folder')


def method_options(config: AnomalyTrainConfig, options=None):
    """``config`` with its method's default learning rate where it has none, and ``options``
    (the method's ``Options``; its defaults if None), both checked."""
    method = get_method(config.method)
    options = method.Options() if options is None else options
    if not isinstance(options, method.Options):
        raise ConfigError(f'{config.method} takes {method.Options.__name__}, got '
                          f'{type(options).__name__}')
    if config.lr is None:
        config = dataclasses.replace(config, lr=method.default_lr)
    config.check()
    method.check(config, options)
    return config, options


def train_anomaly(config: AnomalyTrainConfig, options=None, *,
                  say: Callable[[str], None] = lambda line: print(line, flush=True)) -> int:
    """Train ``config.method`` on ``config.checkpoint`` as ``config`` (the run: epochs,
    iters_per_epoch, batch_size, lr, ...) and ``options`` (the method's own ``Options``; its
    defaults if None) say; writes OUT/last.pt every epoch, with both in it.

    A method trains in one or more phases (``Method.phases``), each with its own optimiser,
    and may end with a stage without gradients (``Method.finish``). ``stage`` re-runs one of
    them alone on OUT/last.pt; ``resume`` continues where OUT/last.pt stopped. Progress goes
    to ``say``, a line at a time (fields named in backquotes, as the errors name them)."""
    config, options = method_options(config, options)
    method = get_method(config.method)
    phases, finish, stage, from_start = _stages(method, config, options)
    last_path = os.path.join(config.out, 'last.pt')
    if os.path.exists(last_path) and not config.resume and stage == 'all':
        raise ConfigError(f'{last_path!r} exists: continue it (`resume`), re-run one stage '
                          f'alone (`stage`), or choose another `out` folder')
    if not from_start and not os.path.exists(last_path):
        raise ConfigError(f'`stage` {stage} continues {last_path!r}, which does not exist: run '
                          f'the earlier stages first (or `stage` all)')
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model, info, trainable = method.prepare(*_base_model(method, config.checkpoint), config,
                                            options)
    done, history, extra, saved = {}, [], {}, {}
    if os.path.exists(last_path) and (config.resume or stage != 'all'):
        saved = read_checkpoint(last_path)
        _same_base(saved.get('model_info', {}), info, last_path, config.checkpoint)
        try:
            model.load_state_dict(saved['model_state'])
        except RuntimeError:
            raise ConfigError(f'{last_path!r} holds a network built with other options than '
                              f'these (e.g. widths, uncertainty, features); give the same '
                              f'options, or another `out` folder') from None
        history = list(saved.get('history', []))
        info.method_params.update(saved.get('model_info', {}).get('method_params', {}))
        done = dict(saved.get('phases_done', {}))
        extra = {k: saved[k] for k in ('ensemble',) if k in saved}
        if config.resume and 'phase' not in saved and phases:  # one-phase checkpoints before
            done[phases[0][0]] = int(saved['epoch'])
    model = to_fast_layout(model.to(device))  # channels-last, as the engine feeds it
    size_hw = config.input_size or info.input_size_hw
    crop_hw = config.crop_size or size_hw
    transform = TrainTransform(crop_hw, base_size_hw=size_hw, mean=info.mean, std=info.std)
    dataset = CityscapesDataset(config.data, 'train', transform=transform,
                                cache_dir=config.cache) if phases else None
    generator = torch.Generator().manual_seed(config.seed)
    state = method.training_state(config, options, info,
                                  torch.Generator().manual_seed(config.seed + 1)) \
        if phases else None
    amp_dtype = resolve_amp(config.amp, device)
    scaler = torch.amp.GradScaler('cuda') if amp_dtype == torch.float16 else None
    say(f'{config.method} on {info.backbone} ({config.checkpoint}): {trainable:,} of '
        f'{count_parameters(model):,} parameters train, {precision_name(amp_dtype)}; '
        + (f'{len(dataset)} images, {config.iters_per_epoch} iterations of batch '
           f'{config.batch_size} per epoch; ' if phases else '')
        + 'stages: ' + ', '.join([p[0] for p in phases] + ([method.finish_stage] if finish
                                                           else [])))
    started = time.monotonic()

    def save(phase: str, epoch: int) -> None:
        save_checkpoint(last_path, model, info, epoch=len(history), phase=phase,
                        phase_epoch=epoch, phases_done=done, history=history, **extra,
                        config=to_plain(config), options=to_plain(options),
                        **({'optimizer': optimizer.state_dict()} if optimizer else {}))

    optimizer = None
    for name, epochs, lr in phases:
        first = done.get(name, 0) + 1 if config.resume else 1
        if first > epochs:
            continue
        count = method.start_phase(model, name, fresh=first == 1)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        if config.resume and first > 1 and saved.get('phase', phases[0][0]) == name and \
                'optimizer' in saved:
            optimizer.load_state_dict(saved['optimizer'])
        if len(phases) > 1 or name != 'train':
            say(f'phase {name}: {count:,} parameters, epochs {first}-{epochs}, lr {lr:g}')
        loader = DataLoader(dataset, batch_size=config.batch_size, drop_last=True,
                            sampler=RandomSampler(dataset, generator=generator),
                            **worker_options(config.workers))
        for epoch in range(first, epochs + 1):
            generator.manual_seed(config.seed * 100_003 + epoch + 1_000 * len(done))
            tag = f'{name} ' if name != 'train' else ''
            stats = train_one_epoch(
                model, loader, optimizer, None, None, device,
                step=lambda m, images, labels, index: method.train_step(m, images, labels,
                                                                        state, index),
                first_step=(epoch - 1) * config.iters_per_epoch, max_iters=config.iters_per_epoch,
                amp_dtype=amp_dtype, scaler=scaler, desc=f'{tag}epoch {epoch}/{epochs}')
            means = {k: v for k, v in stats.items() if k not in ('iters', 'seconds')}
            history.append({'epoch': len(history) + 1, 'phase': name, 'phase_epoch': epoch,
                            **means, 'seconds': time.monotonic() - started})
            done[name] = epoch
            save(name, epoch)
            say(f'{tag}epoch {epoch}/{epochs}: ' +
                ', '.join(f'{k} {v:.4f}' for k, v in means.items()))
            minutes = (time.monotonic() - started) / 60
            if config.time_budget_min and minutes > config.time_budget_min:
                say(f'time budget used; continue with `resume` (from {last_path})')
                return 0
    if finish:  # through the pipeline's own forward pass, as the node will run the model
        detector = Detector(model, info, make_scorer(method.scorer, info),
                            device=device.type, precision=precision_name(amp_dtype))
        extra.update(method.finish(model, info, config, options, detector.logits))
        save(method.finish_stage, 0)
    elif method.finish_stage and phases:
        say(f'the {method.finish_stage} stage was not run: run it again alone (`stage` '
            f'{method.finish_stage}) now that the earlier stages changed')
    say(f'wrote {last_path}; evaluate with: anomseg eval TRACK --weights {last_path} '
        f'--scorers {method.scorer},msp,maxlogit,energy')
    return 0
