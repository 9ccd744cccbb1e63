"""Fleet replay: the same bags scored in this process and on local Ray, timed, with results
compared and each worker's peak memory.

Writes ``--bags`` synthetic drives (labelled anomaly-track scenes at ``--size``, ``--frames``
each, seeds apart) and, with ``--datasets``, benchmark folders as bags (``anomseg bag
from-dataset``'s layout), then runs ``anomseg fleet eval`` on all of them once with
``--workers 1`` (in-process) and once with ``--workers N`` on Ray, each into a fresh output
folder, and prints one table: wall time, frames per second, peak memory per worker, and
whether every bag's numbers are identical between the two.

    .venv/bin/python bench/bench_fleet.py [--weights W] [--bags 20] [--frames 10]
        [--size 1024x512] [--workers 2] [--datasets DIR ...] [--work /tmp/anomseg_fleet]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from anomseg_ros.sizes import parse_size


def write_bags(work: str, count: int, frames: int, size_hw, datasets) -> list:
    from anomseg_ros.data.anomaly import AnomalyDataset
    from anomseg_ros.data.synthetic.tracks import render_track_sample
    from rosbag_tools import write_dataset_bag
    bags = []
    for index in range(count):
        path = os.path.join(work, 'bags', f'synthetic_{index:02d}')
        if not os.path.exists(path):
            rng = np.random.default_rng(1000 + index)
            track = ('anomaly', 'obstacle')[index % 2]
            write_dataset_bag(((image, label, None) for image, label, _ in (
                render_track_sample(track, rng, size_hw[1], size_hw[0])
                for _ in range(frames))), path)
        bags.append(path)
    for folder in datasets:
        path = os.path.join(work, 'bags', os.path.basename(os.path.normpath(folder)))
        if not os.path.exists(path):
            write_dataset_bag(((image, label, None) for _, image, label in
                               AnomalyDataset(folder)), path)
        bags.append(path)
    return bags


def run(bags, out, workers, weights, scorers):
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, '-m', 'anomseg_ros.cli.main', 'fleet', 'eval', *bags,
               '--out', out, '--workers', str(workers), '--scorers', scorers]
    if weights:
        command += ['--weights', weights]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f'{" ".join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}')
    with open(os.path.join(out, 'run.json')) as handle:
        described = json.load(handle)
    with open(os.path.join(out, 'results.jsonl')) as handle:
        lines = {json.loads(line)['bag']: json.loads(line) for line in handle}
    return wall, described, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', default='')
    parser.add_argument('--scorers', default='msp,maxlogit')
    parser.add_argument('--bags', type=int, default=20)
    parser.add_argument('--frames', type=int, default=10)
    parser.add_argument('--size', default='1024x512', help='camera size of the synthetic bags')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--datasets', nargs='*', default=[])
    parser.add_argument('--work', default='/tmp/anomseg_fleet_bench')
    args = parser.parse_args()
    bags = write_bags(args.work, args.bags, args.frames, parse_size(args.size), args.datasets)
    rows, results = [], []
    for workers in (1, args.workers):
        wall, described, lines = run(bags, os.path.join(args.work, f'out_{workers}'), workers,
                                     args.weights, args.scorers)
        results.append(lines)
        memory = ', '.join(f'{w["peak_rss_mb"]:.0f}' for w in described['workers_described'])
        frames = sum(line.get('frames') or 0 for line in lines.values())
        rows.append(f'| {described["engine"]} | {workers} | {len(lines)} | {frames} | '
                    f'{wall:.1f} | {described["seconds"]:.1f} | '
                    f'{frames / described["seconds"]:.2f} | {memory} |')
    same = all(results[0][bag].get('scorers') == results[1][bag].get('scorers') and
               results[0][bag]['status'] == results[1][bag]['status'] for bag in results[0])
    print(f'{len(bags)} bags ({args.bags} synthetic at {args.size}, {args.frames} frames each; '
          f'{len(args.datasets)} datasets), scorers {args.scorers}, {os.cpu_count()} CPUs')
    print('| engine | workers | bags | frames | wall s (command) | scoring s | frames/s | '
          'peak MB per worker |')
    print('| --- | --- | --- | --- | --- | --- | --- | --- |')
    print('\n'.join(rows))
    print(f'per-bag results identical between the two: {same}')
    return 0 if same else 1


if __name__ == '__main__':
    sys.exit(main())
