"""``anomseg demo``: start the real detector node, replay a short synthetic drive with anomalies
to it over DDS, score what it publishes against the ground truth, and save overlays. What
``make demo`` runs."""
import glob
import os
import time

import numpy as np

from anomseg_ros.checkpoint import load_model
from anomseg_ros.cli.common import add_model_args, node_params
from anomseg_ros.cli.evaluate import print_anomaly_table
from anomseg_ros.data.images import read_rgb, write_rgb
from anomseg_ros.data.synthetic import render_track_sample
from anomseg_ros.evaluation import AnomalyMetrics, SegmentationMetrics
from anomseg_ros.labels import CITYSCAPES_CLASSES
from anomseg_ros.methods import get_method
from anomseg_ros.paths import default_weights, learned_weights
from anomseg_ros.pipeline import make_scorer, parse_threshold
from anomseg_ros.runtimes import is_exported
from anomseg_ros.visualize import heatmap

DEMO_SCORERS = ('msp', 'maxlogit', 'maxentropy', 'energy')


def add_parser(verbs):
    parser = verbs.add_parser(
        'demo', help='run the live node on a synthetic drive over ROS 2 DDS and score it',
        description='Starts the detector node as its own process, publishes each frame of a '
        'synthetic drive with anomalies (or --images) on /anomseg_demo/image, waits for all '
        'five outputs, switches the scorer at run time, and prints AuPRC / FPR95 / AUROC per '
        'scorer and the mIoU of the published labels; overlays and heat maps go to --out.')
    parser.add_argument('--images', nargs='*', default=None, metavar='IMAGE',
                        help='image files or globs instead of the synthetic drive (no metrics)')
    parser.add_argument('--frames', type=int, default=12, help='frames of the synthetic drive')
    parser.add_argument('--seed', type=int, default=2024, help='seed of the synthetic drive')
    add_model_args(parser, scorer=False)
    parser.add_argument('--scorers', default=None,
                        help='scorers to run, switched at run time (first one draws overlays); '
                        'default: the learned checkpoint\'s own score first, then '
                        + ', '.join(DEMO_SCORERS))
    parser.add_argument('--threshold', type=parse_threshold, default='auto',
                        help='obstacle threshold: auto (default) = the checkpoint\'s calibrated '
                        'one for each scorer, else 0.5; or a number for the first scorer')
    parser.add_argument('--out', default='demo_out', help='output folder (default demo_out)')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds to wait for each frame')
    parser.set_defaults(run=run)


def _frames(args):
    """``(name, rgb, anomaly label or None, semantic label or None)`` for each frame."""
    if args.images:
        paths = sorted(p for pattern in args.images for p in (glob.glob(pattern) or [pattern]))
        return [(os.path.splitext(os.path.basename(p))[0], read_rgb(p), None, None)
                for p in paths]
    frames = []
    for i in range(args.frames):
        # every third frame an obstacle scene: only its road is evaluated, like RoadObstacle21
        image, label, info = render_track_sample(
            'anomaly' if i % 3 else 'obstacle', np.random.default_rng([args.seed, i]))
        frames.append((f'frame_{i:03d}', image, label, info['semantic']))
    return frames


def run(args) -> int:
    from anomseg_ros.ros.client import live_detector
    from anomseg_ros.data.messages import image_msg_to_array

    if not args.weights and learned_weights() is not None:
        # the bundled SynBoost holds its own frozen copy of the default segmentation model:
        # the demo shows its learned score beside that model's classic ones
        args.weights = learned_weights()
    if not args.weights and default_weights() is None:
        args.weights, args.input_size = 'random', args.input_size or (256, 512)
        print('WARNING: no trained weights are bundled (models/erfnet_synthetic.pt is missing): '
              'the node runs a RANDOMLY INITIALISED ERFNet, so its labels and anomaly scores are '
              'meaningless. Pass --weights PATH for real ones.')
    scorers = [s for s in (args.scorers or ','.join(_default_scorers(args.weights))).split(',')
               if s]
    frames = _frames(args)
    os.makedirs(args.out, exist_ok=True)
    params = node_params(args, scorer=scorers[0], threshold=args.threshold)
    weights = params['weights']
    namespace, log_path = '/anomseg_demo', os.path.join(args.out, 'node.log')
    print(f'starting the detector node ({weights}); its log: {log_path}')
    anomaly = {name: AnomalyMetrics() for name in scorers}
    segmentation = SegmentationMetrics(len(CITYSCAPES_CLASSES), class_names=CITYSCAPES_CLASSES)
    sent = received = 0
    latencies = []
    masks = {name: np.zeros(3, np.int64) for name in scorers}  # tp, fp, fn of the masks
    thresholds = {}
    with live_detector(namespace, params=params, log_path=log_path,
                       timeout=args.timeout) as live:
        client = live.client
        for pass_index, scorer in enumerate(scorers):
            refused = client.set_parameters(scorer=scorer)
            if pass_index and not refused and args.threshold != 'auto':
                refused = client.set_parameters(threshold='auto')
            if refused:
                print(f'scorer {scorer} refused: {refused["scorer"]}')
                continue
            for index, (name, image, label, semantic) in enumerate(frames):
                stamp_ns = (1 + pass_index * len(frames) + index) * 50_000_000
                start = time.monotonic()
                client.publish_rgb(image, stamp_ns)
                sent += 1
                outputs = client.wait_outputs(stamp_ns, timeout=args.timeout)
                if outputs is None:
                    print(f'{name} ({scorer}): no answer within {args.timeout:.0f} s')
                    continue
                received += 1
                latencies.append(time.monotonic() - start)
                score = image_msg_to_array(outputs['anomaly_score'])[0]
                if label is not None:
                    anomaly[scorer].update(score, label)
                    mask = image_msg_to_array(outputs['obstacle_mask'])[0] == 255
                    masks[scorer] += _mask_counts(mask, label)
                if pass_index == 0:
                    labels = image_msg_to_array(outputs['semantic'])[0]
                    if semantic is not None:
                        segmentation.update(labels, semantic)
                    _save(args.out, name, outputs, score, image_msg_to_array)
            thresholds[scorer] = _node_threshold(client, scorer)
        exit_code = live.stop()
    _report(anomaly, segmentation, frames, weights)
    _report_masks(masks, thresholds, frames)
    print(f'{received} of {sent} frames answered over DDS'
          + (f', median round trip {1000 * float(np.median(latencies)):.0f} ms' if latencies
             else '') + f'; node exited with code {exit_code}')
    print(f'overlays, score heat maps and labels are in {os.path.abspath(args.out)}')
    return 0 if received == sent and exit_code == 0 else 1


def _default_scorers(weights) -> list:
    """The classic scorers, after the learned method's own when ``weights`` has one."""
    scorers = list(DEMO_SCORERS)
    if weights and weights != 'random' and not is_exported(weights):
        method = load_model(weights)[1].method
        if method:
            scorers.insert(0, get_method(method).scorer)
    return scorers


def _mask_counts(mask: np.ndarray, label: np.ndarray) -> np.ndarray:
    """tp, fp, fn of an obstacle mask against a 0 / 1 / 255 label (255 not evaluated)."""
    valid, anomaly = label != 255, label == 1
    return np.array([np.sum(mask & anomaly), np.sum(mask & valid & ~anomaly),
                     np.sum(~mask & anomaly)], np.int64)


def _node_threshold(client, scorer: str, timeout: float = 5.0) -> str:
    """The threshold the node reports in /diagnostics for ``scorer``, once its diagnostics
    speak of that scorer (right after a switch they may still describe the previous one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and client.node_counters().get('scorer') != scorer:
        time.sleep(0.1)
    counters = client.node_counters()
    if counters.get('scorer') != scorer:
        return '?'
    try:
        return f'{float(counters["threshold"]):.4g}'
    except (KeyError, ValueError):
        return counters.get('threshold', '?')


def _report_masks(masks, thresholds, frames):
    if all(label is None for _, _, label, _ in frames):
        return
    print('obstacle masks the node published, pixels of all frames (in %):')
    print(f'{"scorer":<12} {"threshold":>10} {"precision":>9} {"recall":>7} {"IoU":>7}')
    for name, (tp, fp, fn) in masks.items():
        precision = 100 * tp / (tp + fp) if tp + fp else float('nan')
        recall = 100 * tp / (tp + fn) if tp + fn else float('nan')
        iou = 100 * tp / (tp + fp + fn) if tp + fp + fn else float('nan')
        print(f'{name:<12} {thresholds.get(name, "?"):>10} {precision:9.2f} {recall:7.2f} '
              f'{iou:7.2f}')


def _save(out, name, outputs, score, to_array):
    write_rgb(os.path.join(out, f'{name}_overlay.png'), to_array(outputs['overlay'])[0])
    write_rgb(os.path.join(out, f'{name}_score.png'), heatmap(score))
    write_rgb(os.path.join(out, f'{name}_semantic.png'), to_array(outputs['semantic_color'])[0])


def _report(anomaly, segmentation, frames, weights):
    if all(label is None for _, _, label, _ in frames):
        return
    print(f'\nlive node on {len(frames)} synthetic frames (pixels of all frames pooled):')
    results = {name: m.compute() for name, m in anomaly.items()}
    if weights != 'random' and not is_exported(weights):  # the node's scorers' settings
        info = load_model(weights)[1]
        for name, result in results.items():
            result['settings_text'] = make_scorer(name, info).describe()
    print_anomaly_table('demo drive', results, 'camera resolution, as published')
    if segmentation.num_images:
        print(f'mIoU of the published labels: {100 * segmentation.compute()["miou"]:.2f}')
