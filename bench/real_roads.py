"""The real-data table end to end: adapt a learned score to "the user's frames", set the
label-free operating point, and score every classic, refined and adapted score on real sets
that took no part in either.

    .venv/bin/python bench/real_roads.py --weights erfnet_pretrained.pth \\
        --frames DIR [--frames DIR ...] --data SET [--extra-set SET ...] --out OUT

- ``--frames``: folders of unlabeled camera frames (their images only; no label is read),
  linked together into ``OUT/user_frames``. The scored sets (``--data``, ``--extra-set``)
  must be others: no scored image takes part in adaptation or calibration.
- adapt: ``anomseg adapt`` with the recipe below (``--method``, ``--epochs`` ... pass through)
  into ``OUT/adapted``;
- operating point: ``anomseg calibrate --thresholds --unlabeled OUT/user_frames
  --false-alarm 0.5%`` for every scorer, into ``OUT/adapted/calibrated.pt``;
- scores: ``anomseg eval`` of each set with that checkpoint (its segmentation network is the
  base's, unchanged, so the classic scores are the base's), into ``OUT/eval.json``.

Each step is skipped when its result exists (an interrupted run resumes; adapt continues with
``--resume``). It prints one table: AuPRC / FPR95 per set and score, the mask's pixel precision
/ recall / IoU at the label-free threshold, and the adapted score's AuPRC over the best classic
one's.
"""
import argparse
import glob
import json
import os
import sys

from anomseg_ros.checkpoint import read_checkpoint
from anomseg_ros.cli.main import main as anomseg
from anomseg_ros.data.images import IMAGE_EXTENSIONS

CLASSIC = ('msp', 'maxlogit', 'maxentropy', 'energy')
REFINED = ('maxlogit+boundary', 'energy+boundary', 'maxlogit+smooth')
RECIPE = ['--method', 'synboost', '--generator-epochs', '4', '--epochs', '24',
          '--iters-per-epoch', '60', '--batch-size', '4', '--crop-size', '512x256',
          '--workers', '1']


def link_frames(folders, out):
    """Every image of ``folders`` linked into ``out`` (names prefixed by their folder)."""
    os.makedirs(out, exist_ok=True)
    count = 0
    for folder in folders:
        folder = os.path.normpath(folder)
        prefix = os.path.basename(folder)
        if prefix == 'images':  # a benchmark's images/: name them after the benchmark
            prefix = os.path.basename(os.path.dirname(folder))
        for path in sorted(glob.glob(os.path.join(folder, '**', '*'), recursive=True)):
            if path.lower().endswith(IMAGE_EXTENSIONS):
                link = os.path.join(out, f'{prefix}_{os.path.basename(path)}')
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(path), link)
                count += 1
    return count


def step(name, done, argv):
    if done:
        print(f'[{name}] done before: skipped', flush=True)
        return
    print(f'[{name}] anomseg {" ".join(argv)}', flush=True)
    code = anomseg(argv)
    if code:
        sys.exit(f'{name} failed with exit code {code}')


def table(report, adapted):
    print('\n| set | score | AuPRC | FPR95 | mask precision | recall | IoU |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for name, result in report['results'].items():
        scorers = result['scorers']
        for scorer, r in scorers.items():
            mask = r.get('mask', {})
            cells = [f'{100 * mask[k]:.1f}' if k in mask else '-'
                     for k in ('precision', 'recall', 'iou')]
            print(f'| {name} | {scorer} | {100 * r["auprc"]:.2f} | {100 * r["fpr95"]:.2f} | '
                  + ' | '.join(cells) + ' |')
        best = max(CLASSIC, key=lambda s: scorers[s]['auprc'])
        ratio = scorers[adapted]['auprc'] / max(scorers[best]['auprc'], 1e-9)
        lower = scorers[adapted]['fpr95'] < scorers[best]['fpr95']
        print(f'| {name} | {adapted} / best classic ({best}) | {ratio:.2f}x | '
              f'{"lower" if lower else "not lower"} | | | |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', required=True, help='the base segmentation checkpoint')
    parser.add_argument('--frames', action='append', required=True,
                        help='a folder of unlabeled frames (repeat for several)')
    parser.add_argument('--data', action='append', required=True, help='a scored set')
    parser.add_argument('--extra-set', action='append', default=[],
                        help='a further set scored with the same adapted model')
    parser.add_argument('--out', required=True)
    parser.add_argument('--false-alarm', default='0.5%')
    parser.add_argument('--device', default='cpu')
    args, recipe = parser.parse_known_args()
    recipe = recipe or RECIPE
    method = recipe[recipe.index('--method') + 1] if '--method' in recipe else 'synboost'
    scored = [os.path.abspath(p) for p in args.data + args.extra_set]
    frames = [os.path.abspath(p) for p in args.frames]
    if set(scored) & set(frames) or any(s.startswith(f + os.sep) or f.startswith(s + os.sep)
                                        for s in scored for f in frames):
        sys.exit('a scored set is among the frames: adapt and calibrate on other images')
    user_frames = os.path.join(args.out, 'user_frames')
    print(f'{link_frames(args.frames, user_frames)} unlabeled frames in {user_frames}')
    adapted_dir = os.path.join(args.out, 'adapted')
    adapted = os.path.join(adapted_dir, 'last.pt')
    finished = os.path.exists(adapted) and 'adaptation' in read_checkpoint(adapted)
    step('adapt', finished, ['adapt', '--checkpoint', args.weights, '--frames', user_frames,
                             '--out', adapted_dir, '--device', args.device, *recipe]
         + (['--resume'] if os.path.exists(adapted) else []))
    calibrated = os.path.join(adapted_dir, 'calibrated.pt')
    scorers = [method, *CLASSIC, *REFINED]
    step('calibrate', os.path.exists(calibrated),
         ['calibrate', '--weights', adapted, '--thresholds', '--unlabeled', user_frames,
          '--false-alarm', args.false_alarm, '--scorers', ','.join(scorers), '--out',
          calibrated, '--device', args.device])
    report_path = os.path.join(args.out, 'eval.json')
    step('eval', os.path.exists(report_path),
         ['eval', *scored, '--weights', calibrated, '--scorers', ','.join(scorers),
          '--device', args.device, '--json', report_path])
    with open(report_path) as stream:
        table(json.load(stream), method)


if __name__ == '__main__':
    main()
