"""PEBAL and SLEEG with their ablations (paper 004 Table 4, paper 003 Tables 3-5) next to the
classic scores of the same checkpoint, on anomaly tracks, plus each scorer's extra inference
time over the plain model. Resumable: finished trainings and evaluations are reused.

    python bench/study_methods.py --checkpoint models/erfnet_synthetic.pt \
        --data synth/cityscapes --outliers synth/outliers \
        --tracks synth/tracks/obstacle,synth/tracks/anomaly,synth/tracks/blended \
        --out study_methods
"""
import argparse
import itertools
import json
import os
import statistics
import sys
import time

import numpy as np

from anomseg_ros.cli.main import main as anomseg
from anomseg_ros.checkpoint import read_checkpoint
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.evaluation.anomaly import evaluate_anomaly
from anomseg_ros.evaluation.report import percent
from anomseg_ros.pipeline import Detector

# name: (method, extra train-anomaly flags, what it is)
RUNS = {
    'pebal': ('pebal', [], 'PEBAL (eqs. 2-8, AnomalyMix)'),
    'pebal_noreg': ('pebal', ['--no-regulariser'], 'PEBAL without the regulariser (eq. 8)'),
    'pebal_fixed': ('pebal', ['--fixed-penalty', '100'], 'PEBAL, fixed penalty a = 100'),
    'pebal_codereg': ('pebal', ['--reg-form', 'code'], 'PEBAL, regulariser as the authors\' code'),
    'sleeg': ('sleeg', [], 'SLEEG (TAE + TORE, convex patches, refinement)'),
    'sleeg_tae': ('sleeg', ['--estimators', 'tae'], 'SLEEG, TAE only'),
    'sleeg_tore': ('sleeg', ['--estimators', 'tore'], 'SLEEG, TORE only'),
    'sleeg_static': ('sleeg', ['--static-margin'], 'SLEEG, static margin (Table 4)'),
    'sleeg_square': ('sleeg', ['--patch-shape', 'square'], 'SLEEG, square patches'),
    'sleeg_norefine': ('sleeg', ['--no-refinement'], 'SLEEG, convex, no refinement'),
}
CLASSIC = ('msp', 'maxlogit', 'maxentropy', 'energy')


def _row(label, scorer, results, tracks):
    """One table row: AuPRC | FPR95 of ``scorer`` on each track of ``results``."""
    cells = [f'{percent(results[t][scorer]["auprc"])} | {percent(results[t][scorer]["fpr95"])}'
             for t in tracks]
    return f'| {label} | {scorer} | ' + ' | '.join(cells) + ' |'


def train(name, args):
    method, extra, _ = RUNS[name]
    out = os.path.join(args.out, name)
    last = os.path.join(out, 'last.pt')
    done = os.path.exists(last) and read_checkpoint(last).get('epoch', 0) >= args.epochs
    if not done:
        argv = ['train-anomaly', '--method', method, '--checkpoint', args.checkpoint,
                '--data', args.data, '--out', out, '--epochs', str(args.epochs),
                '--iters-per-epoch', str(args.iters), '--batch-size', str(args.batch_size),
                '--crop-size', args.crop_size, '--workers', str(args.workers), *extra]
        if method == 'pebal':
            argv += ['--outliers', args.outliers, '--lr', str(args.pebal_lr)]
        if os.path.exists(last):
            argv.append('--resume')
        print(f'[{name}] anomseg {" ".join(argv)}', flush=True)
        if anomseg(argv) != 0:
            raise SystemExit(f'training {name} failed')
    return last


def evaluate(name, weights, scorers, args, cache):
    if name in cache:
        return cache[name]
    detector = Detector.from_checkpoint(weights, device=args.device)
    results = {}
    for track in args.tracks.split(','):
        dataset = AnomalyDataset(track)
        samples = itertools.islice(dataset, args.eval_limit) if args.eval_limit else dataset
        results[dataset.name] = evaluate_anomaly(detector, samples, scorers)
    cache[name] = results
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(cache, f, indent=2)
    return results


def timing(weights_by_scorer, args):
    """Median ms per frame of Detector.predict for each (weights, scorer), in one run, frames
    interleaved so that load changes hit every scorer alike."""
    track = AnomalyDataset(args.tracks.split(',')[0])
    frames = [rgb for _, rgb, _ in itertools.islice(track, 5)]
    detectors = {label: Detector.from_checkpoint(w, scorer=s, device=args.device)
                 for label, (w, s) in weights_by_scorer.items()}
    times = {label: [] for label in detectors}
    for repeat in range(args.timing_repeats):
        for label, detector in detectors.items():
            frame = frames[repeat % len(frames)]
            start = time.perf_counter()
            detector.predict(frame)
            if repeat >= 2:
                times[label].append(1000 * (time.perf_counter() - start))
    return {label: statistics.median(t) for label, t in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--data', required=True)
    parser.add_argument('--outliers', required=True)
    parser.add_argument('--tracks', required=True, help='comma-separated anomaly folders')
    parser.add_argument('--out', required=True)
    parser.add_argument('--runs', default=','.join(RUNS))
    parser.add_argument('--epochs', type=int, default=4)
    parser.add_argument('--iters', type=int, default=50)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop-size', default='256x128')
    parser.add_argument('--pebal-lr', type=float, default=1e-4)
    parser.add_argument('--workers', type=int, default=1)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--eval-limit', type=int, default=None,
                        help='evaluate on the first N images of each track')
    parser.add_argument('--timing-repeats', type=int, default=22)
    parser.add_argument('--no-timing', action='store_true')
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    cache_path = os.path.join(args.out, 'results.json')
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    runs = args.runs.split(',')
    weights = {name: train(name, args) for name in runs}
    table = {'base': evaluate('base', args.checkpoint, list(CLASSIC), args, cache)}
    for name in runs:
        method = RUNS[name][0]
        table[name] = evaluate(name, weights[name], [method], args, cache)
    tracks = list(table['base'])
    lines = [f'Checkpoint `{args.checkpoint}`; {args.epochs} epochs x {args.iters} iterations x '
             f'batch {args.batch_size} of {args.crop_size} crops per run; '
             f'{args.eval_limit or "all"} images per track; AuPRC / FPR95 in %.',
             '', '| model | scorer | ' + ' | '.join(f'{t} AuPRC | {t} FPR95' for t in tracks)
             + ' |', '| --- | --- |' + ' --- | --- |' * len(tracks)]
    lines += [_row('base', scorer, table['base'], tracks) for scorer in CLASSIC]
    lines += [_row(RUNS[name][2], RUNS[name][0], table[name], tracks) for name in runs]
    if not args.no_timing:
        picks = {'base + msp': (args.checkpoint, 'msp')}
        for method in ('pebal', 'sleeg'):
            if method in runs:
                picks[f'{method} + {method}'] = (weights[method], method)
        medians = timing(picks, args)
        base = medians['base + msp']
        lines += ['', f'Median ms per frame (Detector.predict, {args.timing_repeats - 2} frames '
                  f'each, interleaved in one run):', '', '| model + scorer | ms | ratio |',
                  '| --- | --- | --- |']
        lines += [f'| {label} | {ms:.1f} | {ms / base:.2f} |' for label, ms in medians.items()]
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(args.out, 'table.md'), 'w') as f:
        f.write(text)
    print(text)
    return 0


if __name__ == '__main__':
    np.seterr(all='ignore')
    sys.exit(main())
