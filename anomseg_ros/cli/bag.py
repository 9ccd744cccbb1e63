"""``anomseg bag ...``: benchmark datasets as rosbags, and measuring the node on a bag."""
import json
import math
import os

from tqdm import tqdm

from anomseg_ros.cli.common import add_model_args, build_detector, node_params, warn_if_untrained
from anomseg_ros.data.anomaly import AnomalyDataset
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.data.layouts import is_cityscapes_layout
from anomseg_ros.errors import DatasetError


def add_parser(verbs):
    parser = verbs.add_parser('bag', help='datasets as rosbags; evaluate the node on a bag',
                              description='rosbag2 tools (the rosbags library; no ROS install '
                              'needed to write or read bags).')
    actions = parser.add_subparsers(dest='bag_verb', metavar='ACTION', required=True)

    make = actions.add_parser(
        'from-dataset', help='write a dataset as a rosbag2',
        description='Writes /camera/image_raw (sensor_msgs/Image rgb8, or CompressedImage png '
        'with --compressed on /camera/image_raw/compressed) and the ground truth as mono8 '
        '/ground_truth/anomaly (0, 1, 255) or /ground_truth/semantic (trainIds), one frame '
        'per image stamped --rate apart. Never overwrites an existing bag.')
    make.add_argument('dataset', help='anomaly benchmark folder or Cityscapes-layout root')
    make.add_argument('out', help='bag folder to create')
    make.add_argument('--rate', type=float, default=10.0, help='frames per second of stamps')
    make.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap')
    make.add_argument('--compressed', action='store_true')
    make.add_argument('--split', default=None, help='split of a Cityscapes-layout dataset '
                      '(default val) or of Lost and Found (default: all)')
    make.set_defaults(run=run_from_dataset)

    evaluate = actions.add_parser(
        'eval', help='replay a bag through the live node and score its outputs',
        description='Starts the detector node (or uses a running one with --connect), replays '
        "the bag's camera frames to it over DDS, collects anomaly_score and semantic by header "
        'stamp and reports AuPRC / FPR95 / AUROC and mIoU, with the frames sent, received and '
        'missing. --offline computes the same numbers in-process without ROS.')
    evaluate.add_argument('bag')
    add_model_args(evaluate)
    evaluate.add_argument('--offline', action='store_true', help='no ROS: run the pipeline here')
    evaluate.add_argument('--rate', type=float, default=None,
                          help='replay at this many frames per second (default: paced by the '
                          'node, so none is dropped)')
    evaluate.add_argument('--connect', action='store_true',
                          help='use a detector node already running in --namespace')
    evaluate.add_argument('--namespace', default='/anomseg_bag_eval')
    evaluate.add_argument('--timeout', type=float, default=60.0, help='seconds per frame')
    evaluate.add_argument('--startup-timeout', type=float, default=180.0,
                          help='seconds the node may take to answer its first frame (a first '
                          'start converts the model to OpenVINO)')
    evaluate.add_argument('--node-log', default=None, metavar='FILE',
                          help='the node\'s log (default: beside --json, else in the temporary '
                          'folder); named in every error')
    evaluate.add_argument('--record', default=None, metavar='OUT',
                          help="also write the node's outputs to this new bag")
    evaluate.add_argument('--resolution', choices=('label', 'network'), default='label',
                          help='compare at the camera (label) resolution the node publishes '
                          '(default), or shrink its maps and the ground truth to the network '
                          'input size, as anomseg eval does by default (close to, not bit-equal '
                          'with, anomseg eval: the node has resampled the scores to the camera '
                          'size first)')
    evaluate.add_argument('--json', default=None, metavar='FILE', help='write the report here')
    evaluate.add_argument('--force', action='store_true', help='overwrite an existing --json')
    evaluate.set_defaults(run=run_eval)


def _dataset_frames(args):
    if is_cityscapes_layout(args.dataset):
        dataset = CityscapesDataset(args.dataset, args.split or 'val')
        return len(dataset), ((image, None, label) for image, label in dataset)
    dataset = AnomalyDataset(args.dataset, split=args.split)
    print(f'labels: {dataset.describe_convention()}')
    return len(dataset), ((image, label, None) for _, image, label in dataset)


def run_from_dataset(args) -> int:
    from rosbag_tools import write_dataset_bag
    total, frames = _dataset_frames(args)
    with tqdm(total=total, unit='frame', disable=None) as bar:
        count = write_dataset_bag((bar.update(1) or f for f in frames), args.out,
                                  rate_hz=args.rate, storage=args.storage,
                                  compressed=args.compressed)
    print(f'{count} frames written to {os.path.abspath(args.out)} ({args.storage})')
    return 0


def _node_log(args) -> str:
    if args.node_log:
        return args.node_log
    if args.json:
        return os.path.splitext(args.json)[0] + '.node.log'
    import tempfile
    handle, path = tempfile.mkstemp(prefix='anomseg_bag_eval_', suffix='.node.log')
    os.close(handle)
    return path


def run_eval(args) -> int:
    from rosbag_tools.evaluate import evaluate_live, evaluate_offline
    if args.json and os.path.exists(args.json) and not args.force:
        raise DatasetError(f'{args.json!r} already exists: give --force to overwrite it, or '
                           f'another --json path')
    detector = build_detector(args) if args.offline or args.resolution == 'network' else None
    size_hw = detector.input_size_hw if args.resolution == 'network' else None
    if args.offline:
        warn_if_untrained(detector)
        report = evaluate_offline(args.bag, detector, size_hw=size_hw)
        mode = 'offline'
    else:
        params = node_params(args)
        log_path = None if args.connect else _node_log(args)
        if log_path:
            print(f'node log: {log_path}')
        report = evaluate_live(args.bag, params=params, namespace=args.namespace,
                               rate_hz=args.rate, timeout=args.timeout, record=args.record,
                               connect=args.connect, size_hw=size_hw, log_path=log_path,
                               startup_timeout=args.startup_timeout)
        report['node_log'] = log_path
        mode = 'live'
    report.update(mode=mode, bag=args.bag, scorer=args.scorer)
    print(f'{mode}: {report["frames_sent"]} frames sent, {report["frames_received"]} received, '
          f'{report["frames_missing"]} missing')
    if report['frames_missing']:
        print(f'WARNING: {report["frames_missing"]} frames got no answer (first stamps: '
              f'{report["missing_stamps_ns"][:5]}); their pixels are not in the metrics')
    damage = report['damage']
    if damage['skipped'] or damage['truncated']:
        parts = [f'{count} frames {reason}' for reason, count in sorted(damage['skipped'].items())]
        if damage['truncated']:
            parts.append(f'reading stopped early ({damage["truncated"]})')
        print(f'ERROR: the bag is damaged: {"; ".join(parts)}; the metrics cover the '
              f'{report["frames_sent"]} frames that could be read (first: '
              f'{"; ".join(damage["examples"][:2])})')
    not_finite = [f'{part} {key}' for part in ('anomaly', 'segmentation')
                  for key, value in report.get(part, {}).items()
                  if isinstance(value, float) and not math.isfinite(value)]
    if not_finite:
        print(f'ERROR: {", ".join(not_finite)} are not numbers: the frames\' labels hold no '
              f'pixel of one of the classes they need (no anomaly pixel, or no inlier one)')
    if 'anomaly' in report:
        a = report['anomaly']
        print(f'{args.scorer}: AuPRC {100 * a["auprc"]:.2f}  FPR95 {100 * a["fpr95"]:.2f}  '
              f'AUROC {100 * a["auroc"]:.2f}  (%, {a["num_images"]} frames pooled, at '
              f'{report["resolution"]})')
    if 'segmentation' in report:
        print(f'mIoU {100 * report["segmentation"]["miou"]:.2f} (at {report["resolution"]})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
    failed = report['frames_missing'] or damage['skipped'] or damage['truncated'] or not_finite
    return 1 if failed else 0
