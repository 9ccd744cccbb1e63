"""``anomseg fleet ...``: many recorded drives scored offline, on Ray or in this process."""
import os
import time

from tqdm import tqdm

from anomseg_ros.cli.common import add_model_args
from anomseg_ros.errors import ConfigError, DatasetError


def add_parser(verbs):
    parser = verbs.add_parser(
        'fleet', help='score many rosbags offline (Ray), mine frames, gate regressions',
        description='Fleet replay: every frame of many rosbag2 drives through the node\'s own '
        'Detector, offline (no DDS, no clock: as fast as the workers go), one result line per '
        'bag, resumable. Use anomseg bag eval for the live node on one bag.')
    actions = parser.add_subparsers(dest='fleet_verb', metavar='ACTION', required=True)
    evaluate = actions.add_parser(
        'eval', help='score bags: per-bag and pooled metrics where they have ground truth',
        description='Bags with ground truth (/ground_truth/anomaly, as anomseg bag '
        'from-dataset writes) get AuPRC / FPR95 and the mask\'s precision / recall; every bag '
        'gets its score distribution, the share of pixels flagged at the threshold, and '
        'obstacles per minute. OUT/results.jsonl has one line per bag; a bag already scored '
        'with the same weights and settings is skipped, so an interrupted run resumes.')
    _add_run_args(evaluate)
    evaluate.set_defaults(run=run_eval, top=0)
    mine = actions.add_parser(
        'mine', help='the frames of drives with the most anomalous evidence, to label',
        description='Ranks every frame by its largest obstacle on the drivable region (the '
        'first scorer\'s mask inside the predicted road), then by the road\'s flagged share; '
        'writes the top K with pictures (mask overlay | score) to OUT/mined.md and '
        'OUT/mined.jsonl (bag, topic, stamp). Resumable like eval.')
    _add_run_args(mine)
    mine.add_argument('--top', type=int, default=20, help='frames to keep (default 20)')
    mine.set_defaults(run=run_eval)
    gate = actions.add_parser(
        'compare', help='the regression gate between two fleet runs (exit 1 when worse)',
        description='Per-bag and pooled changes from OLD to NEW; exits 1 when a pooled AuPRC '
        'drops or FPR95 rises by more than --max-drop points, or when a bag scored in OLD '
        'fails or is missing in NEW. What a CI job calls.')
    gate.add_argument('old', help='output folder of the reference run')
    gate.add_argument('new', help='output folder of the run to check')
    gate.add_argument('--max-drop', type=float, default=1.0,
                      help='percentage points a pooled metric may get worse (default 1.0)')
    gate.set_defaults(run=run_compare)


def _add_run_args(parser):
    parser.add_argument('bags', nargs='+', metavar='BAGS',
                        help='rosbag2 folders, folders holding bags, glob patterns, or text '
                        'files listing one of those per line')
    parser.add_argument('--out', required=True, help='output folder (made if missing; '
                        'results already in it are reused)')
    add_model_args(parser, scorer=False)
    parser.add_argument('--scorers', default='msp', help='comma-separated; the first makes '
                        'the obstacle mask (default msp)')
    parser.add_argument('--temperature', type=float, default=None)
    parser.add_argument('--threshold', default='auto', help='obstacle threshold: auto (the '
                        'checkpoint\'s calibrated one per scorer) or a number')
    parser.add_argument('--topic', default=None, help='camera topic (default /camera/image_raw '
                        'or /camera/image_raw/compressed)')
    parser.add_argument('--min-area', type=int, default=None,
                        help='smallest obstacle in pixels (default the node\'s, 50)')
    engine = parser.add_argument_group('engine')
    engine.add_argument('--workers', type=int, default=None,
                        help='Ray workers, one model each (default: one per 2 CPU cores of '
                        'this machine, at least 1); 1 runs in this process')
    engine.add_argument('--engine', choices=('auto', 'ray', 'process'), default='auto',
                        help='auto (default): Ray for several workers or a cluster address '
                        'when Ray is installed, else this process')
    engine.add_argument('--address', default=None, metavar='ray://HOST:PORT',
                        help='a Ray cluster (default: RAY_ADDRESS, else local Ray)')
    engine.add_argument('--cpus-per-worker', type=float, default=None,
                        help='Ray CPUs each worker reserves (and its threads); default: the '
                        'cluster\'s CPUs shared out')


def _config(args):
    from anomseg_ros.fleet.scoring import FleetConfig
    from anomseg_ros.obstacles import DEFAULT_MIN_AREA
    from anomseg_ros.paths import resolve_weights
    from anomseg_ros.pipeline import parse_threshold
    scorers = tuple(s.strip() for s in args.scorers.split(',') if s.strip())
    if not scorers:
        raise ConfigError('--scorers names no scorer')
    if args.top < 0:
        raise ConfigError('--top is at least 0')
    return FleetConfig(weights=resolve_weights(args.weights), scorers=scorers,
                       backbone=args.backbone, device=args.device, precision=args.precision,
                       runtime=args.runtime, input_size_hw=args.input_size,
                       calibration=args.calibration,
                       int8_max_drop=args.int8_max_drop,
                       threshold=parse_threshold(args.threshold),
                       temperature=args.temperature, image_topic=args.topic,
                       min_area=DEFAULT_MIN_AREA if args.min_area is None else args.min_area,
                       top_k=args.top)


def _weights_sha256(weights: str) -> str:
    from anomseg_ros.runtimes.cache import file_sha256
    if weights == 'random':
        return weights
    if not os.path.isfile(weights):  # said before any bag is looked at
        raise ConfigError(f'weights file {weights!r} does not exist; give the path of a '
                          f'.pth/.pt checkpoint or an exported model (or "random")')
    return file_sha256(weights)


def run_eval(args) -> int:
    from anomseg_ros.fleet import engine, report
    from anomseg_ros.fleet.bags import bag_id, expand_bags
    from rosbag_tools.bags import fingerprint
    from anomseg_ros.fleet.store import ResultStore
    config = _config(args)
    workers = args.workers or max(1, (os.cpu_count() or 1) // 2)
    if workers < 1:
        raise ConfigError('--workers is at least 1')
    chosen = engine.choose_engine(args.engine, workers, args.address)
    if chosen == 'process' and workers > 1:
        print(f'Ray is not installed: the {workers} workers asked for run as one, in this '
              f'process (pip install "ray>=2.40" for several)')
        workers = 1
    key = config.key(_weights_sha256(config.weights))
    store = ResultStore(args.out)
    if store.unreadable_lines:
        print(f'WARNING: {store.unreadable_lines} lines of {store.path} cannot be read (cut '
              f'short); their bags are scored again')
    other = store.other_config_lines(key)
    if other:
        print(f'{other} result lines in {store.out} are of other weights or settings: they '
              f'are kept and not used')
    bags, problems = expand_bags(args.bags)
    base = {'config': key, 'image_topic': args.topic}
    for spec, problem in problems:
        print(f'ERROR: {spec}: {problem}')
        store.append(dict(base, bag=os.path.abspath(spec), bag_id=bag_id(spec),
                          status='error', error=f'{spec}: {problem}'))
    todo, fingerprints, reused = [], {}, 0
    for bag in bags:
        try:
            fingerprints[bag] = fingerprint(bag)
        except DatasetError as exc:
            print(f'ERROR: {exc}')
            store.append(dict(base, bag=bag, bag_id=bag_id(bag), status='error',
                              error=str(exc)))
            continue
        if store.finished(bag, fingerprints[bag], key):
            reused += 1
        else:
            todo.append(bag)
    print(f'{len(bags)} bags: {reused} already scored with these weights and settings, '
          f'{len(todo)} to score on {chosen if todo else "nothing"}'
          f'{f" with {workers} workers" if todo and chosen == "ray" else ""}')
    started = time.perf_counter()
    frames = 0
    workers_described = []
    bar = tqdm(total=len(todo), unit='bag', desc='fleet', disable=None)

    def on_result(bag, result):
        nonlocal frames
        line = {k: v for k, v in result.items()
                if k not in ('histograms', 'candidates', 'damage_text')}
        line.update(base, bag=bag, bag_id=bag_id(bag), fingerprint=fingerprints[bag])
        if result.get('damage_text'):
            line['damage_text'] = result['damage_text']
        store.append(line, result)
        frames += result.get('frames') or 0
        bar.update(1)
        fps = (result['frames'] / result['seconds']) if result.get('frames') and \
            result.get('seconds') else 0.0
        what = result.get('error') or result.get('damage_text') or ''
        tqdm.write(f'{result["status"]:<7} {os.path.basename(bag)}: '
                   f'{result.get("frames", 0)} frames, {fps:.1f} frames/s'
                   f'{"; " + what if what else ""}')

    try:
        if todo and chosen == 'ray':
            workers_described = engine.run_on_ray(
                config, todo, on_result, workers=workers, address=args.address,
                cpus_per_worker=args.cpus_per_worker)
        elif todo:
            workers_described = engine.run_in_process(config, todo, on_result)
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    lines = store.current(bags + [os.path.abspath(spec) for spec, _ in problems], key)
    scored = [line for line in lines if line['status'] != 'error']
    thresholds = {name: scored[0]['scorers'][name]['threshold'] for name in config.scorers} \
        if scored else {name: float('nan') for name in config.scorers}
    pooled = store.pooled(lines, config.scorers, thresholds)
    run = {'weights': config.weights, 'weights_sha256': key['weights'],
           'scorers': list(config.scorers), 'config': key, 'bags': [line['bag'] for line in lines],
           'engine': chosen, 'workers': workers, 'seconds': seconds, 'frames': frames,
           'workers_described': workers_described}
    store.write_json(report.RUN, run)
    store.write_json('pooled.json', pooled)
    summary = report.write_summary(store.out, lines, pooled, run)
    print('\n'.join(report.pooled_table(pooled)))
    print(f'{frames} frames in {seconds:.1f} s; {sum(line["status"] == "error" for line in lines)}'
          f' of {len(lines)} bags failed; summary: {summary}')
    for entry in workers_described:
        if entry.get('peak_rss_mb'):
            print(f'worker {entry["pid"]} ({entry["engine"]}, {entry["runtime"]} '
                  f'{entry["precision"]}): peak memory {entry["peak_rss_mb"]:.0f} MB')
    if config.top_k:
        frames_top = report.mined(lines, config.top_k)
        print(f'{len(frames_top)} frames worth labelling: '
              f'{report.write_mined(store.out, frames_top)}')
    failed = [line for line in lines if line['status'] == 'error']
    for line in failed:
        print(f'ERROR: {line["bag"]}: {line.get("error")}')
    return 1 if failed else 0


def run_compare(args) -> int:
    from anomseg_ros.fleet.report import compare
    lines, failures = compare(args.old, args.new, max_drop=args.max_drop)
    print('\n'.join(lines))
    if failures:
        print(f'REGRESSION: {len(failures)} finding(s):')
        for failure in failures:
            print(f'  {failure}')
        return 1
    print('no regression')
    return 0
