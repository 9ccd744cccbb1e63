"""``anomseg eval DATASET...``: anomaly metrics on benchmark folders, mIoU on Cityscapes-layout
folders, or anomaly metrics of precomputed score maps (``--scores``)."""
import json
import os

from tqdm import tqdm

from anomseg_ros import __version__
from anomseg_ros.cli.common import add_model_args, build_detector, warn_if_untrained
from anomseg_ros.data.anomaly import AnomalyDataset, CONVENTIONS
from anomseg_ros.data.cityscapes import CityscapesDataset
from anomseg_ros.data.layouts import is_cityscapes_layout
from anomseg_ros.errors import ConfigError
from anomseg_ros.evaluation.anomaly import evaluate_anomaly, evaluate_score_maps, RESOLUTIONS
from anomseg_ros.evaluation.components import SMIYC_MIN_SIZES, track_of, TRACKS
from anomseg_ros.evaluation.report import write_report
from anomseg_ros.evaluation.segmentation import evaluate_segmentation
from anomseg_ros.pipeline import make_scorer
from anomseg_ros.scoring import list_scorers


def add_parser(verbs):
    parser = verbs.add_parser(
        'eval', help='evaluate on anomaly benchmarks (AuPRC, FPR95) or Cityscapes (mIoU)',
        description='A DATASET folder with images/ + labels_masks/ (0 inlier, 1 anomaly, 255 '
        'void) gets AuPRC, FPR95 and AUROC per scorer, pooling the pixels of all its images '
        '(one forward pass serves all scorers); a folder with leftImg8bit/ + gtFine/ (the '
        'Cityscapes layout) gets mIoU and per-class IoU on --split. With --scores DIR, score '
        'maps DIR/<image stem>.npy (or .hdf5, as --export-smiyc writes them) computed by any '
        'method are evaluated instead of a model.')
    parser.add_argument('datasets', nargs='+', metavar='DATASET')
    add_model_args(parser, scorer=False)
    parser.add_argument('--scorers', default='msp,maxlogit,maxentropy',
                        help=f'comma-separated, from: {", ".join(list_scorers())}')
    parser.add_argument('--temperature', type=float, default=None)
    parser.add_argument('--scores', default=None, metavar='DIR',
                        help='evaluate precomputed float score maps <stem>.npy or <stem>.hdf5 '
                        '(label size) of a single anomaly DATASET; no model is run')
    parser.add_argument('--resolution', choices=RESOLUTIONS, default='network',
                        help='compare at the network input size with labels resized by PIL\'s '
                        'nearest neighbour (the papers\' protocol; default), or at the label '
                        'size (as the node publishes)')
    parser.add_argument('--split', default=None,
                        help='split of a Cityscapes-layout DATASET (default val) or of Lost and '
                        'Found (default: all)')
    parser.add_argument('--skip-without-anomaly', action='store_true',
                        help='leave out images with no anomaly pixel (the course code does)')
    parser.add_argument('--convention', choices=sorted(CONVENTIONS), default=None,
                        help='label convention (default: from the folder name)')
    parser.add_argument('--json', default=None, metavar='FILE', help='write the report here')
    parser.add_argument('--report', default=None, metavar='DIR',
                        help='write report.md (the papers\' table), report.json, PR / ROC '
                        'curves, example overlays and SegmentMeIfYouCan component metrics')
    parser.add_argument('--examples', type=int, default=3,
                        help='example overlays per dataset in --report')
    parser.add_argument('--component-track', choices=('auto',) + TRACKS, default='auto',
                        help='component metrics: SegmentMeIfYouCan\'s minimum sizes of this '
                        'track (anomaly: objects of 100 pixels, segments of 500; obstacle: 10 '
                        'and 50, in pixels of the label resolution); auto: obstacle for '
                        'folders named like RoadObstacle21 or Lost and Found, else anomaly')
    parser.add_argument('--min-gt-size', type=int, default=None,
                        help='component metrics: ignore ground-truth objects smaller than this '
                        '(pixels at the label resolution; default: the track\'s)')
    parser.add_argument('--min-pred-size', type=int, default=None,
                        help='component metrics: drop predicted segments smaller than this '
                        '(default: the track\'s)')
    smiyc = parser.add_argument_group('SegmentMeIfYouCan submission')
    smiyc.add_argument('--export-smiyc', default=None, metavar='DIR',
                       help='also write every image\'s score map (the unlabelled test frames '
                       'of a released track too) as DIR/anomaly_p/METHOD/DATASET/STEM.hdf5, '
                       'the road-anomaly-benchmark\'s format, one METHOD per scorer')
    smiyc.add_argument('--smiyc-method', default='anomseg', metavar='NAME',
                       help='method name prefix: the folders are NAME_SCORER (default anomseg)')
    smiyc.add_argument('--smiyc-dataset', default=None, metavar='NAME',
                       help='the benchmark\'s dataset name (default: from the folder name: '
                       'RoadAnomaly21 -> AnomalyTrack-all, RoadObstacle21 -> '
                       'ObstacleTrack-all, LostAndFound -> LostAndFound-test)')
    parser.set_defaults(run=run)


def _bar(total, name):
    return tqdm(total=total, desc=name, unit='image', leave=False, disable=None)


def run(args) -> int:
    scorers = [s.strip() for s in args.scorers.split(',') if s.strip()]
    report = {'package_version': __version__, 'resolution': args.resolution, 'results': {}}
    if args.scores:
        if len(args.datasets) != 1 or is_cityscapes_layout(args.datasets[0]):
            raise ConfigError('--scores evaluates the score maps of exactly one anomaly '
                              'DATASET (images/ + labels_masks/)')
        dataset = AnomalyDataset(args.datasets[0], convention=args.convention,
                                 split=args.split)
        with _bar(len(dataset), dataset.name) as bar:
            result = evaluate_score_maps(dataset, args.scores, progress=bar,
                                         skip_without_anomaly=args.skip_without_anomaly)
        report.update(scores=os.path.abspath(args.scores), resolution='label')
        report['results'][dataset.name] = {'path': dataset.root,
                                           'labels': dataset.describe_convention(),
                                           'scorers': {'scores': result}}
        print_anomaly_table(dataset.name, {'scores': result}, 'label')
        return _write(report, args.json)

    detector = build_detector(args, scorer=scorers[0])
    warn_if_untrained(detector)
    report.update(weights=detector.info.source, backbone=detector.info.backbone,
                  input_size_wh=list(detector.input_size_hw[::-1]),
                  runtime={'runtime': detector.runtime, 'precision': detector.precision_name,
                           'device': str(detector.device), 'reason': detector.runtime_reason})
    print(f'{detector.info.backbone} ({detector.info.source}) on {detector.device}: '
          f'{detector.runtime} in {detector.precision_name} ({detector.runtime_reason})')
    examples = {}
    for path in args.datasets:
        if is_cityscapes_layout(path):
            split = args.split or 'val'
            dataset = CityscapesDataset(path, split)
            name = f'{os.path.basename(os.path.normpath(path))}/{split}'
            with _bar(len(dataset), name) as bar:
                result = evaluate_segmentation(detector, dataset, resolution=args.resolution,
                                               progress=bar)
            report['results'][name] = {'path': path, 'segmentation': result}
            result['resolution'] = args.resolution
            print(f'{name}: mIoU {100 * result["miou"]:.2f} over {result["num_images"]} images '
                  f'(at {_resolution_text(args.resolution, detector)})')
            for cls, iou in result['per_class_iou'].items():
                print(f'  {cls:<14} {100 * iou:6.2f}')
            continue
        dataset = AnomalyDataset(path, convention=args.convention, split=args.split)
        examples[dataset.name] = []
        track, min_gt_size, min_pred_size = component_sizes(args, dataset.name)
        thresholds, threshold_source = _mask_thresholds(detector, scorers, args)
        scorer_objs = {name: make_scorer(name, detector.info, temperature=args.temperature)
                       for name in scorers}
        writer = _smiyc_writer(args, dataset, scorers)
        with _bar(len(dataset), dataset.name) as bar:
            results = evaluate_anomaly(
                detector, dataset, scorer_objs, resolution=args.resolution,
                on_scores=writer.write if writer else None,
                skip_without_anomaly=args.skip_without_anomaly, temperature=args.temperature,
                components=bool(args.report), curves=bool(args.report),
                min_gt_size=min_gt_size, min_pred_size=min_pred_size,
                examples=examples[dataset.name], num_examples=args.examples if args.report
                else 0, mask_thresholds=thresholds, progress=bar)
        for result in results.values():
            if 'mask' in result:
                result['mask']['threshold_source'] = threshold_source
            if 'components' in result:
                result['components']['track'] = track
        report['results'][dataset.name] = {'path': dataset.root,
                                           'labels': dataset.describe_convention(),
                                           'scorers': results}
        print_anomaly_table(dataset.name, results, _resolution_text(args.resolution, detector))
        if writer:
            _export_unlabelled(detector, scorer_objs, dataset, writer)
            report['results'][dataset.name]['smiyc'] = {
                'dir': os.path.abspath(args.export_smiyc), 'dataset': writer.dataset,
                'methods': writer.methods, 'images': writer.written}
            print(f'SegmentMeIfYouCan: {writer.written} score maps per scorer in '
                  f'{os.path.join(os.path.abspath(args.export_smiyc), "anomaly_p")} '
                  f'(methods {", ".join(writer.methods.values())}, dataset {writer.dataset})')
    if args.report:
        path = write_report(report, args.report, examples=examples)
        print(f'report written to {os.path.abspath(path)}')
    return _write(report, args.json)


def _smiyc_writer(args, dataset, scorers):
    if not args.export_smiyc:
        return None
    from anomseg_ros.evaluation.smiyc import dataset_name, SmiycWriter
    return SmiycWriter(args.export_smiyc, dataset_name(dataset.root, args.smiyc_dataset),
                       {name: f'{args.smiyc_method}_{name}' for name in scorers})


def _export_unlabelled(detector, scorer_objs, dataset, writer) -> None:
    """The images of the dataset's images/ folder that it left out for having no label
    (a released track's test frames): scored and written too, since a submission needs them."""
    from anomseg_ros.data.images import IMAGE_EXTENSIONS, read_rgb
    from anomseg_ros.evaluation.anomaly import score_image
    folder = os.path.join(dataset.root, 'images')
    if not os.path.isdir(folder):
        return
    known = {sample.name for sample in dataset.samples}
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.splitext(f)[0] not in known)
    for file in tqdm(files, desc='test frames', unit='image', leave=False, disable=None):
        image = read_rgb(os.path.join(folder, file))
        writer.write(os.path.splitext(file)[0],
                     score_image(detector, scorer_objs, image, 'label'), image.shape[:2])


def component_sizes(args, dataset_name: str) -> tuple:
    """``(track, min_gt_size, min_pred_size)`` of the component metrics on a dataset: the
    SegmentMeIfYouCan track's sizes unless given."""
    track = track_of(dataset_name) if args.component_track == 'auto' else args.component_track
    gt, pred = SMIYC_MIN_SIZES[track]
    return (track, gt if args.min_gt_size is None else args.min_gt_size,
            pred if args.min_pred_size is None else args.min_pred_size)


def _resolution_text(resolution: str, detector) -> str:
    if resolution == 'network':
        return f'network resolution {detector.input_size_hw[1]}x{detector.input_size_hw[0]}'
    return 'label resolution'


def _mask_thresholds(detector, scorers, args) -> tuple:
    """Each scorer's obstacle threshold as the node would use it, and where it comes from:
    --threshold, else the checkpoint's calibrated one; scorers with neither get no mask
    columns."""
    given = getattr(args, 'threshold', 'auto')
    if given != 'auto':
        return {name: float(given) for name in scorers}, 'given'
    return ({name: detector.info.thresholds[name] for name in scorers
             if name in detector.info.thresholds}, 'checkpoint calibration')


def print_anomaly_table(name, results, resolution: str):
    """AuPRC / FPR95 / AUROC of each scorer on one dataset, the obstacle mask's pixel
    precision / recall / IoU at its threshold where there is one (in %), and the settings each
    scorer used; the header says the resolution compared at."""
    masks = any('mask' in r for r in results.values())
    print(f'{"dataset":<20} {"scorer":<12} {"AuPRC":>7} {"FPR95":>7} {"AUROC":>7}' +
          (f'  {"mask at threshold: precision":>28} {"recall":>7} {"IoU":>7}' if masks else '')
          + f'  (in %, at {resolution})  settings')
    for scorer, r in results.items():
        mask = r.get('mask')
        extra = (f'  {mask["threshold"]:>12.4g}: {100 * mask["precision"]:13.2f} '
                 f'{100 * mask["recall"]:7.2f} {100 * mask["iou"]:7.2f}') if mask else \
            (' ' * 45 if masks else '')
        print(f'{name:<20} {scorer:<12} {100 * r["auprc"]:7.2f} {100 * r["fpr95"]:7.2f} '
              f'{100 * r["auroc"]:7.2f}{extra}  {r.get("settings_text", "-")}')


def _write(report, path) -> int:
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'report written to {os.path.abspath(path)}')
    return 0
