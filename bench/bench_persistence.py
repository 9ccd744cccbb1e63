"""What temporal persistence (``persistence_k`` of ``persistence_n``) does to the published
obstacles on a bag replay: false obstacles per frame, and the share of the labelled objects
still reported, with persistence off and at each k of n, in one run.

    .venv/bin/python bench/bench_persistence.py [--weights W] [--scorer S]
        [--bag BAG [--topic T] | --scenes 20 --frames-per-scene 10 --track anomaly]
        [--settings 2/3,3/5] [--out OUT]

Without ``--bag`` it writes a synthetic drive into ``OUT/drive.mcap`` first (with its
ground truth, as ``anomseg bag`` does): ``--scenes`` scenes of ``--track``, each approached
over ``--frames-per-scene`` frames (``data.synthetic.tracks.render_approach``: a slow zoom with
fresh sensor noise each frame, so objects persist and the detector's noise comes and goes).
With ``--bag`` it replays your own recording, in stamp order; without ground truth in it only
the obstacles per frame are counted.

The frames go through the node's own core: ``Detector.predict`` at the checkpoint's threshold
for ``--scorer`` (``threshold: auto``), ``find_obstacles`` (``--min-area``) and an
``ObstacleTracker`` per setting. An obstacle is *false* when its box holds inlier pixels and
no anomaly pixel; a labelled object (an 8-connected component of anomaly pixels of at least
``--min-area``) is *reported* when a published obstacle's box covers one of its pixels.
"""
import argparse
import os
import statistics

import numpy as np

from anomseg_ros.cli.common import parse_size
from anomseg_ros.data.synthetic.tracks import render_approach, TRACKS
from anomseg_ros.obstacles import DEFAULT_MIN_AREA, find_obstacles, ObstacleTracker
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector
from rosbag_tools.bags import BagDamage, read_frames, write_dataset_bag


def parse_settings(text):
    """``"2/3,3/5"`` -> ``[(2, 3), (3, 5)]``."""
    settings = []
    for item in text.split(','):
        k, n = (int(v) for v in item.split('/'))
        settings.append((k, n))
    return settings


def synthetic_drive(scenes, per_scene, track, seed, size_hw):
    for scene in range(scenes):
        rng = np.random.default_rng([seed, scene])
        yield from render_approach(track, rng, frames=per_scene, width=size_hw[1],
                                   height=size_hw[0])


def judge(obstacles, label, min_area):
    """``(false obstacles, labelled objects, labelled objects reported)`` of one frame."""
    false = 0
    for o in obstacles:
        box = label[o.y:o.y + o.height, o.x:o.x + o.width]
        if not (box == 1).any() and (box == 0).any():
            false += 1
    objects = find_obstacles(label == 1, np.zeros(label.shape, np.float32), min_area=min_area)
    covered = np.zeros(label.shape, bool)
    for o in obstacles:
        covered[o.y:o.y + o.height, o.x:o.x + o.width] = True
    reported = 0
    for obj in objects:
        box = (label[obj.y:obj.y + obj.height, obj.x:obj.x + obj.width] == 1)
        if (box & covered[obj.y:obj.y + obj.height, obj.x:obj.x + obj.width]).any():
            reported += 1
    return false, len(objects), reported


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', default='', help='checkpoint (default: the bundled model)')
    parser.add_argument('--scorer', default='energy')
    parser.add_argument('--bag', help='replay this bag instead of a synthetic drive')
    parser.add_argument('--topic', help="the bag's camera topic (default: its only one)")
    parser.add_argument('--scenes', type=int, default=20)
    parser.add_argument('--frames-per-scene', type=int, default=10)
    parser.add_argument('--track', default='anomaly', choices=TRACKS)
    parser.add_argument('--seed', type=int, default=7)
    parser.add_argument('--size', type=parse_size, default='1024x512', metavar='WxH',
                        help='synthetic frames (default 1024x512)')
    parser.add_argument('--settings', type=parse_settings, default=parse_settings('2/3,3/5'),
                        help='k/n pairs (default 2/3,3/5)')
    parser.add_argument('--min-area', type=int, default=DEFAULT_MIN_AREA)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--out', default='out/bench_persistence')
    args = parser.parse_args()

    bag = args.bag
    if bag is None:
        bag = os.path.join(args.out, 'drive.mcap')
        if not os.path.exists(bag):
            os.makedirs(args.out, exist_ok=True)
            count = write_dataset_bag(synthetic_drive(args.scenes, args.frames_per_scene,
                                                      args.track, args.seed, args.size), bag)
            print(f'wrote a synthetic drive of {count} frames ({args.scenes} scenes of the '
                  f'{args.track} track, seed {args.seed}) to {bag}')
    weights = resolve_weights(args.weights)
    detector = Detector.from_checkpoint(weights, scorer=args.scorer, device=args.device)
    print(f'{weights}: {args.scorer} at threshold {detector.threshold:g} '
          f'({detector.threshold_source}), {detector.runtime} {detector.precision_name}')

    names = ['off'] + [f'{k} of {n}' for k, n in args.settings]
    trackers = [None] + [ObstacleTracker(k, n) for k, n in args.settings]
    false = {name: [] for name in names}
    objects, reported = [], {name: [] for name in names}
    damage = BagDamage()
    frames = labelled = 0
    for frame in read_frames(bag, image_topic=args.topic, damage=damage):
        detection = detector.predict(frame.image)
        found = find_obstacles(detection.mask, detection.score_map, min_area=args.min_area)
        frames += 1
        for name, tracker in zip(names, trackers):
            published = found if tracker is None else [t.obstacle for t in tracker.update(found)]
            if frame.anomaly is None:
                false[name].append(len(published))  # no ground truth: every obstacle
                continue
            f, count, hit = judge(published, frame.anomaly, args.min_area)
            false[name].append(f)
            reported[name].append(hit)
            if tracker is None:
                objects.append(count)
        labelled += frame.anomaly is not None
    if damage.skipped:
        print(f'skipped frames: {damage.summary()}')
    what = 'false obstacles' if labelled else 'obstacles (no ground truth in the bag)'
    print(f'\n{frames} frames ({labelled} with ground truth), {sum(objects)} labelled objects')
    print(f'| persistence | {what} per frame | frames with one | labelled objects reported |')
    print('| --- | --- | --- | --- |')
    for name in names:
        per_frame = statistics.fmean(false[name]) if false[name] else float('nan')
        with_one = 100.0 * np.mean([v > 0 for v in false[name]]) if false[name] else float('nan')
        share = (f'{100.0 * sum(reported[name]) / sum(objects):.1f}%' if sum(objects) else '-')
        print(f'| {name} | {per_frame:.2f} | {with_one:.1f}% | {share} |')


if __name__ == '__main__':
    main()
