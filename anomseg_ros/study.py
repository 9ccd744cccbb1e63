"""The comparison study of papers 000 and 001 as one resumable run.

A study file (YAML) names the training data, the anomaly tracks, a training budget, the scorers
and a list of models, each a row of the papers' tables (a backbone, a loss, void training,
initial weights). ``run_study`` trains each model that has no finished checkpoint yet (with
``anomseg train``: an interrupted training resumes from its ``last.pt``), evaluates mIoU and
every scorer on every track (kept per model in ``results.json``, so a rerun skips what is
done), times every backbone in a fresh process, and writes ``study.md`` and ``study.json``.

Example (``config/study_synthetic.yaml``)::

    data: /work/synth/cityscapes
    tracks: [/work/synth/tracks/obstacle, /work/synth/tracks/anomaly]
    scorers: [msp, maxlogit, maxentropy, void]
    budget: {epochs: 3, max_iters_per_epoch: 40, batch_size: 8, input_size: 512x256}
    models:
      - {name: erfnet_ce, backbone: erfnet, loss: ce, init_weights: models/erfnet_synthetic.pt}
      - {name: erfnet_eiml_fl, backbone: erfnet, loss: eiml+focal, init_weights: ...}
      - {name: enet_void, backbone: enet, void: true}
"""
import dataclasses
import itertools
import json
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from anomseg_ros import __version__
from anomseg_ros.checkpoint import count_parameters, read_checkpoint
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.errors import ConfigError
from anomseg_ros.evaluation.anomaly import evaluate_anomaly
from anomseg_ros.evaluation.calibration import (calibration_record, search_temperature,
                                                write_temperature)
from anomseg_ros.evaluation.segmentation import evaluate_segmentation
from anomseg_ros.evaluation.report import percent
from anomseg_ros.evaluation.speed import measure_in_subprocess, SIZES_HW
from anomseg_ros.pipeline import Detector
from anomseg_ros.sizes import parse_size
from anomseg_ros.training.config import TrainConfig
from anomseg_ros.training.train import train
from anomseg_ros.training.losses import loss_title

# the training options a study row may give: TrainConfig's, but where the data and output go
TRAIN_KEYS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                   if f.name not in ('data', 'out', 'resume'))


@dataclasses.dataclass
class StudyModel:
    name: str
    train: Dict[str, object]            # anomseg train options (budget, then the row's own)
    weights: Optional[str] = None       # an existing checkpoint instead of training
    calibrate: Optional[str] = None     # an anomaly track to choose the MSP temperature on
    weights_from: Optional[str] = None  # the checkpoint of an earlier row (to calibrate it)


@dataclasses.dataclass
class Study:
    data: Optional[str]
    tracks: List[str]
    scorers: List[str]
    models: List[StudyModel]
    out: str
    eval_limit: Optional[int] = None    # images per track / val split (None: all)
    speed: bool = True
    speed_repeats: int = 10
    speed_sizes: Tuple[Tuple[int, int], ...] = SIZES_HW    # (height, width)
    speed_backbones: Optional[List[str]] = None             # default: the models' backbones
    device: str = 'auto'
    path: str = ''


def _resolve(base: str, path: Optional[str]) -> Optional[str]:
    if not path:
        return path
    path = os.path.expanduser(str(path))
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(base, path)


def load_study(path: str, *, out: Optional[str] = None) -> Study:
    """Read and check a study file; relative paths are taken from the working directory, or
    else from the study file's folder."""
    try:
        with open(path) as f:
            spec = yaml.safe_load(f) or {}
    except OSError as exc:
        raise ConfigError(f'study file {path!r} cannot be read: {exc.strerror}') from None
    except yaml.YAMLError as exc:
        raise ConfigError(f'study file {path!r} is not valid YAML: {exc}') from None
    base = os.path.dirname(os.path.abspath(path))
    known = {'data', 'tracks', 'scorers', 'budget', 'models', 'out', 'eval_limit', 'speed',
             'speed_repeats', 'speed_sizes', 'speed_backbones', 'device'}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ConfigError(f'{path}: unknown keys {unknown}; a study file has {sorted(known)}')
    budget = dict(spec.get('budget') or {})
    models, names = [], set()
    for i, row in enumerate(spec.get('models') or []):
        if not isinstance(row, dict) or 'name' not in row:
            raise ConfigError(f'{path}: model {i + 1} needs a name (and a backbone or weights)')
        row = dict(row)
        name = str(row.pop('name'))
        if name in names or not name.replace('_', '').replace('-', '').isalnum():
            raise ConfigError(f'{path}: model name {name!r} is repeated or not a plain name '
                              f'(letters, digits, - and _)')
        names.add(name)
        weights = _resolve(base, row.pop('weights', None))
        calibrate = _resolve(base, row.pop('calibrate', None))
        weights_from = row.pop('weights_from', None)
        if weights_from is not None and weights_from not in names - {name}:
            raise ConfigError(f'{path}: model {name!r} takes weights_from {weights_from!r}, '
                              f'which is not a model listed before it')
        options = {**budget, **row}
        bad = sorted(set(options) - set(TRAIN_KEYS))
        if bad:
            raise ConfigError(f'{path}: model {name!r} has unknown options {bad}; they are the '
                              f'anomseg train flags: {", ".join(TRAIN_KEYS)}')
        for key in ('init_weights', 'pretrained_backbone'):
            options[key] = _resolve(base, options.get(key))
        models.append(StudyModel(name, {} if weights_from else options, weights, calibrate,
                                 weights_from))
    if not models:
        raise ConfigError(f'{path}: no models to compare; list them under "models:"')
    study = Study(data=_resolve(base, spec.get('data')),
                  tracks=[_resolve(base, t) for t in spec.get('tracks') or []],
                  scorers=list(spec.get('scorers') or ['msp', 'maxlogit', 'maxentropy']),
                  models=models, out=out or _resolve(base, spec.get('out') or 'study'),
                  eval_limit=spec.get('eval_limit'), speed=bool(spec.get('speed', True)),
                  speed_repeats=int(spec.get('speed_repeats', 10)),
                  speed_sizes=tuple(_size(path, s) for s in spec.get('speed_sizes') or
                                    ['512x256', '1024x512']),
                  speed_backbones=spec.get('speed_backbones'),
                  device=str(spec.get('device', 'auto')), path=os.path.abspath(path))
    if any(m.weights is None for m in models) and not study.data:
        raise ConfigError(f'{path}: models to train need "data:" (a Cityscapes-layout root)')
    return study


def _size(path: str, text: str) -> Tuple[int, int]:
    try:
        return parse_size(str(text))
    except ConfigError as exc:
        raise ConfigError(f'{path}: speed size: {exc}') from None


def train_config(model: StudyModel, out_dir: str, data: str) -> TrainConfig:
    """The ``TrainConfig`` of a study row."""
    return TrainConfig.from_options({'data': data, 'out': out_dir, **{
        k: v for k, v in model.train.items() if v is not None}})


def _finished(last_path: str, epochs: int) -> bool:
    return os.path.exists(last_path) and int(read_checkpoint(last_path).get('epoch', 0)) >= epochs


def ensure_trained(model: StudyModel, out_dir: str, data: str, log: Callable) -> str:
    """The checkpoint of ``model``: given, already trained, or trained (resumed) now."""
    if model.weights:
        return model.weights
    last, best = os.path.join(out_dir, 'last.pt'), os.path.join(out_dir, 'best.pt')
    config = train_config(model, out_dir, data)
    if _finished(last, config.epochs):
        return best if os.path.exists(best) else last
    command = ' '.join(config.argv())
    if os.path.exists(last):
        config = dataclasses.replace(config, resume=last, init_weights=None,
                                     pretrained_backbone=None)
    log(f'[{model.name}] training: anomseg train {command}'
        + (f' (resuming {last})' if config.resume else ''))
    train(config)
    return best if os.path.exists(best) else last


def ensure_calibrated(study: Study, model: StudyModel, weights: str, out_dir: str,
                      log: Callable) -> str:
    """``OUT/<model>/calibrated.pt``: ``weights`` with the MSP temperature chosen on the
    model's calibration track (paper 000 section IV.A), made once."""
    path = os.path.join(out_dir, 'calibrated.pt')
    if os.path.exists(path) and os.path.getmtime(path) >= os.path.getmtime(weights):
        return path
    dataset = AnomalyDataset(model.calibrate)
    log(f'[{model.name}] calibrating the MSP temperature on {dataset.name}')
    detector = Detector.from_checkpoint(weights, device=study.device, runtime='torch')
    search = search_temperature(detector, dataset)
    write_temperature(weights, path, search['temperature'], calibration_record(search, dataset))
    log(f'[{model.name}] temperature {search["temperature"]:g}')
    return path


def _first(dataset, limit: Optional[int]):
    return itertools.islice(dataset, limit) if limit else dataset


def evaluate_model(study: Study, weights: str, log: Callable) -> dict:
    """mIoU on the val split and each scorer on each track, for one checkpoint, in PyTorch: the
    study compares models as they were trained (and counts their parameters)."""
    detector = Detector.from_checkpoint(weights, device=study.device, runtime='torch')
    info = detector.info
    scorers = [s for s in study.scorers if s != 'void' or info.void_channel is not None]
    result = {'weights': weights, 'backbone': info.backbone, 'head': info.head,
              'num_classes': info.num_classes, 'void': info.void_channel is not None,
              'temperature': info.temperature,
              'parameters': count_parameters(detector.model), 'tracks': {}}
    checkpoint = read_checkpoint(weights)
    result['train_args'] = checkpoint.get('args', {})
    result['epochs_trained'] = checkpoint.get('epoch')
    if study.data:
        val = CityscapesDataset(study.data, 'val')
        seg = evaluate_segmentation(detector, _first(val, study.eval_limit))
        result['miou'] = seg['miou']
        result['per_class_iou'] = seg['per_class_iou']
        result['val_images'] = seg['num_images']
    for track in study.tracks:
        dataset = AnomalyDataset(track)
        started = time.monotonic()
        result['tracks'][dataset.name] = evaluate_anomaly(
            detector, _first(dataset, study.eval_limit), scorers)
        log(f'  {dataset.name}: {time.monotonic() - started:.0f} s')
    return result


def run_study(study: Study, *, log: Callable = print, only: Optional[List[str]] = None,
              reevaluate: bool = False) -> dict:
    """Train what is missing, evaluate what is not evaluated, time the backbones; write
    ``study.md`` and ``study.json`` in ``study.out`` and return the results."""
    os.makedirs(study.out, exist_ok=True)
    rows, by_name = {}, {m.name: m for m in study.models}
    for model in study.models:
        if only and model.name not in only:
            continue
        out_dir = os.path.join(study.out, model.name)
        results_path = os.path.join(out_dir, 'results.json')
        source = by_name[model.weights_from] if model.weights_from else model
        weights = ensure_trained(source, os.path.join(study.out, source.name), study.data, log)
        if model.calibrate:
            weights = ensure_calibrated(study, model, weights, out_dir, log)
        stamp = os.path.getmtime(weights)
        if os.path.exists(results_path) and not reevaluate:
            with open(results_path) as f:
                cached = json.load(f)
            if cached.get('weights_mtime') == stamp and cached.get('scorers') == study.scorers:
                rows[model.name] = cached
                continue
        log(f'[{model.name}] evaluating {weights}')
        result = evaluate_model(study, weights, log)
        result.update(weights_mtime=stamp, scorers=study.scorers,
                      loss=source.train.get('loss', 'ce'))
        os.makedirs(out_dir, exist_ok=True)
        with open(results_path, 'w') as f:
            json.dump(result, f, indent=2)
        rows[model.name] = result
    speed = {}
    if study.speed:
        speed_path = os.path.join(study.out, 'speed.json')
        if os.path.exists(speed_path):
            with open(speed_path) as f:
                speed = json.load(f)
        sizes = [f'{w}x{h}' for h, w in study.speed_sizes]
        backbones = study.speed_backbones or [r['backbone'] for r in rows.values()]
        for backbone in dict.fromkeys(backbones):
            if backbone not in speed or list(speed[backbone]['sizes']) != sizes:
                log(f'timing {backbone}')
                speed[backbone] = measure_in_subprocess(
                    backbone, repeats=study.speed_repeats, device=study.device,
                    sizes_hw=study.speed_sizes)
                with open(speed_path, 'w') as f:
                    json.dump(speed, f, indent=2)
    report = {'package_version': __version__, 'study': study.path, 'models': rows,
              'speed': speed, 'eval_limit': study.eval_limit}
    with open(os.path.join(study.out, 'study.json'), 'w') as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(study.out, 'study.md'), 'w') as f:
        f.write(study_markdown(report))
    return report


def _budget(args: dict) -> str:
    if not args:
        return 'given'
    parts = [f'{args.get("epochs", "?")} ep x {args.get("max_iters_per_epoch") or "all"} it x '
             f'batch {args.get("batch_size", "?")}']
    if args.get('crop_size'):
        parts.append(f'crops {args["crop_size"]}')
    if args.get('init_weights'):
        parts.append(f'from {os.path.basename(str(args["init_weights"]))}')
    if args.get('freeze_backbone'):
        parts.append('frozen backbone')
    return ', '.join(parts)


def study_markdown(report: dict) -> str:
    """The papers' tables: models with mIoU, scorer x track AuPRC / FPR95, speed and memory."""
    rows = report['models']
    tracks = list(dict.fromkeys(t for r in rows.values() for t in r['tracks']))
    lines = ['# anomseg_ros study', '',
             f'anomseg_ros {report["package_version"]}; study file `{report["study"]}`; '
             f'{report.get("eval_limit") or "all"} images per track and of the val split. '
             'All values in %. AuPRC higher is better, FPR95 lower is better.', '',
             '## Models', '', '| model | backbone | loss | outputs | parameters | training | '
             'MSP T | mIoU |', '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for name, r in rows.items():
        lines.append(f'| {name} | {r["backbone"]} | {loss_title(r.get("loss") or "ce")} | '
                     f'{r["num_classes"]}{" (void)" if r["void"] else ""} | '
                     f'{r["parameters"] / 1e6:.2f} M | {_budget(r.get("train_args"))} | '
                     f'{r.get("temperature", 1.0):g} | {percent(r.get("miou"))} |')
    lines += ['', '## Anomaly segmentation', '',
              '| model | scorer | ' + ' | '.join(f'{t} AuPRC | {t} FPR95' for t in tracks) +
              ' |', '| --- | --- |' + ' --- | --- |' * len(tracks)]
    for name, r in rows.items():
        scorers = list(dict.fromkeys(s for t in r['tracks'].values() for s in t))
        for scorer in scorers:
            cells = []
            for track in tracks:
                m = r['tracks'].get(track, {}).get(scorer, {})
                cells += [percent(m.get('auprc')), percent(m.get('fpr95'))]
            lines.append(f'| {name} | {scorer} | ' + ' | '.join(cells) + ' |')
    speed = report.get('speed') or {}
    if speed:
        sizes = list(dict.fromkeys(s for v in speed.values() for s in v['sizes']))
        first = next(iter(speed.values()))
        lines += ['', '## Speed and memory', '',
                  f'Batch of one, median of the timed forward passes, on {first["device_name"]}'
                  f'; memory: {first["memory_kind"]} (baseline before building the model: '
                  f'{first["baseline_rss_mib"]:.0f} MiB on the CPU).', '',
                  '| backbone | parameters | ' + ' | '.join(
                      f'{s} ms | {s} peak MiB' for s in sizes) + ' |',
                  '| --- | --- |' + ' --- | --- |' * len(sizes)]
        for backbone, v in speed.items():
            cells = []
            for s in sizes:
                m = v['sizes'].get(s, {})
                cells += [f'{m.get("median_ms", float("nan")):.1f}',
                          f'{m.get("peak_memory_mib", float("nan")):.0f}']
            lines.append(f'| {backbone} | {v["parameters"] / 1e6:.2f} M | ' + ' | '.join(cells)
                         + ' |')
    return '\n'.join(lines) + '\n'
