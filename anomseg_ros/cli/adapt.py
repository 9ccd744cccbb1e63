r"""``anomseg adapt``: a learned anomaly score for your camera, from its unlabeled frames.

    anomseg adapt --checkpoint erfnet_pretrained.pth --frames drive.mcap --topic /cam/image_raw \
        --every 10 --limit 600 --out runs/adapted
    anomseg calibrate --weights runs/adapted/last.pt --thresholds --unlabeled FRAMES --in-place
    ros2 launch anomseg_ros detector.launch.py weights:=runs/adapted/last.pt scorer:=synboost

The frames (a folder of images, or a rosbag2 image topic) are pseudo-labelled by the base
checkpoint, a held-out share becomes a track with pasted outliers, and the method trains as
``anomseg train-anomaly`` trains it (``anomseg_ros.training.adapt``). ``OUT/last.pt`` is an
ordinary checkpoint with the adaptation recorded in it; ``--resume`` continues a run.
"""
import dataclasses
import os

import torch

from anomseg_ros.checkpoint import load_model, read_checkpoint
from anomseg_ros.cli import train_anomaly as train_anomaly_cli
from anomseg_ros.cli.common import add_frames_args, say_as_flags, unlabeled_frames
from anomseg_ros.errors import ConfigError
from anomseg_ros.pipeline import Detector
from anomseg_ros.runtimes.cache import file_sha256
from anomseg_ros.runtimes.registry import runtime_choices
from anomseg_ros.training.adapt import (OUTLIER_TEXTURES, AdaptData, prepare_adaptation_data,
                                        prepared)
from anomseg_ros.training.train_anomaly import train_anomaly

DEFAULT_OUTLIERS = 300  # synthetic cut-outs made when no --outliers folder is given


def add_parser(verbs):
    parser = verbs.add_parser(
        'adapt', help='a learned anomaly score from unlabeled frames of your camera',
        description=__doc__.split('\n\n')[2].replace('\n', ' '))
    group = add_frames_args(parser, '--frames', required=True)
    group.add_argument('--confidence', type=float, default=AdaptData.confidence,
                       help='pseudo-labels where the base model\'s max softmax is at least '
                       'this; void elsewhere (default %(default)s)')
    group.add_argument('--holdout', type=float, default=AdaptData.holdout,
                       help='share of the frames kept out of training for the pasted track '
                       '(default %(default)s)')
    group.add_argument('--outlier-texture', default='auto', choices=('auto',) + OUTLIER_TEXTURES,
                       help='the pasted objects\' pixels: their own (own), or crops of the '
                       'training frames in their shapes (frames); auto (default): frames for '
                       'the generated synthetic cut-outs, own for an --outliers folder')
    group.add_argument('--label-runtime', default='auto', choices=runtime_choices(),
                       help='runtime of the base model while pseudo-labelling')
    train_anomaly_cli.add_arguments(parser, data=False)
    parser.set_defaults(run=run)


def outlier_texture(args) -> str:
    """``--outlier-texture``, with auto resolved: the generated synthetic cut-outs take the
    frames' texture (synthetic textures are what a score trained on them learns to find;
    docs/methods.md has the held-out comparison), a user's own cut-outs keep theirs."""
    if args.outlier_texture != 'auto':
        return args.outlier_texture
    return 'own' if args.outliers else 'frames'


def _outliers(args) -> str:
    if args.outliers:
        return args.outliers
    folder = os.path.join(args.out, 'synthetic_outliers')
    from anomseg_ros.data.synthetic.writer import generate
    generate(folder, {'outliers': DEFAULT_OUTLIERS}, seed=args.seed, workers=1)
    return os.path.join(folder, 'outliers')


def run(args) -> int:
    base_info = load_model(args.checkpoint)[1]  # an unreadable checkpoint is named now
    if base_info.method:
        raise ConfigError(f'{args.checkpoint!r} is already a {base_info.method} model; adapt '
                          f'a plain segmentation checkpoint')
    config = AdaptData(confidence=args.confidence, holdout=args.holdout, seed=args.seed,
                       paste_scale=args.paste_scale, outlier_texture=outlier_texture(args))
    config.check()
    root = os.path.join(args.out, 'data')
    record = prepared(root)
    if record is None or not args.resume:
        if os.path.exists(os.path.join(args.out, 'last.pt')) and not args.resume:
            raise ConfigError(f'{args.out!r} holds an adaptation: continue it with --resume, '
                              f'or choose another --out')
        outliers = _outliers(args)
        labeller = Detector.from_checkpoint(args.checkpoint, scorer='msp', temperature=1.0,
                                            device=args.device, runtime=args.label_runtime,
                                            input_size_hw=args.input_size)
        skipped = []
        print(f'pseudo-labelling the frames of {args.frames} with {args.checkpoint} '
              f'({labeller.runtime}, confidence {config.confidence:g})', flush=True)
        record = prepare_adaptation_data(unlabeled_frames(args, skipped), labeller, root,
                                         outliers=outliers, config=config, source=args.frames)
        for reason in skipped[:10]:
            print(f'skipped: {reason}')
        record['skipped'] = len(skipped)
        print(f'{record["training_frames"]} training frames ({100 * record["ignored_share"]:.1f}% '
              f'of their pixels below the confidence cut-off, void), {record["held_out_frames"]} '
              f'held out for the pasted track; {len(skipped)} skipped', flush=True)
    config, options = train_anomaly_cli.from_args(args, data=root, outliers=record['outliers'])
    if args.method == 'synboost' and not options.ensemble_tracks:
        options = dataclasses.replace(options, ensemble_tracks=os.path.join(root, 'track'))
    code = train_anomaly(config, options, say=say_as_flags(args))
    if code:
        return code
    last = os.path.join(args.out, 'last.pt')
    checkpoint = read_checkpoint(last)
    base = base_info.trained_on or 'unknown images'
    checkpoint['model_info']['trained_on'] = f'{base}, adapted to {args.frames}'
    checkpoint['adaptation'] = {**record, 'method': args.method,
                                'base_sha256': file_sha256(args.checkpoint),
                                'epochs': args.epochs, 'iters_per_epoch': args.iters_per_epoch,
                                'batch_size': args.batch_size}
    torch.save(checkpoint, last + '.tmp')
    os.replace(last + '.tmp', last)
    print(f'adapted: {last} (scorer {args.method}); next: anomseg calibrate --weights {last} '
          f'--thresholds --unlabeled FRAMES --in-place')
    return 0
