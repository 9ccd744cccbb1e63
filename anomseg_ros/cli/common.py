"""Arguments shared by several verbs."""
import argparse
import dataclasses
import glob
import os
import re
from typing import Dict, List, Sequence

from anomseg_ros import sizes
from anomseg_ros.backbones import list_backbones
from anomseg_ros.data.images import IMAGE_EXTENSIONS, read_rgb
from anomseg_ros.errors import AnomsegError, ConfigError, DatasetError
from anomseg_ros.options import field_type, from_plain
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import DEFAULT_INT8_MAX_DROP, Detector, DEVICES, parse_threshold
from anomseg_ros.precision import PRECISIONS
from anomseg_ros.runtimes import runtime_choices
from anomseg_ros.scoring import list_scorers


def add_model_args(parser: argparse.ArgumentParser, *, scorer: bool = True) -> None:
    group = parser.add_argument_group('model')
    group.add_argument('--weights', default='', help='checkpoint (.pt of anomseg_ros or a plain '
                       'state dict such as erfnet_pretrained.pth); default: the bundled model; '
                       '"random" for untrained weights')
    group.add_argument('--backbone', default=None, choices=list_backbones(),
                       help='backbone of a plain state dict (default erfnet)')
    group.add_argument('--device', default='auto', choices=DEVICES)
    group.add_argument('--precision', default='auto', choices=PRECISIONS,
                       help='forward pass precision: auto (default) = bf16 on CPUs with AMX or '
                       'AVX512-BF16, fp16 on CUDA, else fp32; int8 = the checkpoint quantized '
                       'for OpenVINO once on --calibration frames (cached)')
    group.add_argument('--calibration', default='', metavar='DIR|BAG',
                       help='precision int8: frames of your camera to quantize on (a folder of '
                       'images or a rosbag2, BAG#TOPIC for one of its cameras; no labels); '
                       'default "synthetic" for a model '
                       'trained on the synthetic world, required for others')
    group.add_argument('--int8-max-drop', type=float, default=DEFAULT_INT8_MAX_DROP,
                       metavar='POINTS', help='precision int8: NNCF\'s accuracy control keeps '
                       'layers in float until the label-free FPR95 moved at most POINTS '
                       '(default 0: plain int8 with the decoder in float)')
    group.add_argument('--runtime', default='auto', choices=runtime_choices(),
                       help='torch, or openvino (the checkpoint converted once, cached); auto '
                       '(default) = openvino on the CPU when it is installed and the model '
                       'converts, else torch; .onnx / .xml weights pick their own')
    group.add_argument('--input-size', default=None, metavar='WxH', type=parse_size,
                       help="network input size, e.g. 1024x512 (default: the checkpoint's)")
    if scorer:
        group.add_argument('--scorer', default='msp', choices=list_scorers())
        group.add_argument('--temperature', type=float, default=None,
                           help='temperature for msp / temperature / energy')
        group.add_argument('--threshold', type=parse_threshold, default='auto',
                           help='score at or above which a pixel is an obstacle; auto '
                           '(default) = the checkpoint\'s calibrated threshold for the scorer '
                           '(anomseg calibrate --thresholds), else 0.5')


def parse_size(text: str):
    """An argparse type: '1024x512' -> (512, 1024) as (height, width)."""
    try:
        return sizes.parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_vector(text: str):
    """An argparse type: 'R,G,B' -> three floats."""
    try:
        return sizes.parse_vector(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def flag(name: str) -> str:
    """The command-line flag of an option field: ``kernel_size`` -> ``--kernel-size``."""
    return '--' + name.replace('_', '-')


def as_flags(text: str, names) -> str:
    """``text`` of the core, whose option fields are named in backquotes (`` `void_share` ``),
    as the command line says them (``--void-share``): ``names`` holds the fields that are flags
    of the same name, or maps each to its flag (``{'max_drop': '--int8-max-drop'}``); other
    backquoted words stay."""
    def say(match):
        name = match.group(1)
        if isinstance(names, dict):
            return names.get(name, match.group(0))
        return flag(name) if name in names else match.group(0)
    return re.sub(r'`([a-z][a-z0-9_]*)`', say, text)


def say_as_flags(args: argparse.Namespace):
    """A ``say`` for the core's progress lines (``train``, ``train_anomaly``) that prints
    them with their field names as this command's flags (``args.option_fields``)."""
    return lambda line: print(as_flags(line, args.option_fields), flush=True)


def _argparse_type(parse):
    def convert(text):
        try:
            return parse(text)
        except AnomsegError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = getattr(parse, '__name__', 'value')
    return convert


def add_option_fields(group, cls: type, *, skip: Sequence[str] = ()) -> None:
    """One flag per field of the options dataclass ``cls`` (``anomseg_ros.options``), with
    its default, help, metavar and choices: ``name`` is ``--name``; a ``bool`` that defaults
    to False is ``--name``, one that defaults to True is ``--no-name``."""
    names = {field.name for field in dataclasses.fields(cls)}
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        meta, kind = dict(field.metadata), field_type(cls, field.name)
        meta['help'] = as_flags(meta.get('help') or '', names)
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        if kind is bool:
            if default:
                group.add_argument('--no-' + flag(field.name)[2:], dest=field.name,
                                   action='store_false', help=f'turn off {meta.get("help")}')
            else:
                group.add_argument(flag(field.name), action='store_true', help=meta.get('help'))
            continue
        convert = _argparse_type(meta['parse']) if meta.get('parse') else kind
        group.add_argument(flag(field.name), type=convert, default=default, required=required,
                           help=meta.get('help'), metavar=meta.get('metavar'),
                           choices=meta.get('choices'))


def options_from_args(cls: type, args: argparse.Namespace, **overrides):
    """The ``cls`` (an options dataclass) of parsed arguments made by ``add_option_fields``;
    ``overrides`` set fields the command line does not have."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
              if hasattr(args, f.name)}
    return from_plain(cls, {**values, **overrides})


def node_params(args, **extra) -> Dict[str, object]:
    """The detector node's parameters for the model options of ``add_model_args`` (the one
    place command-line options become node parameters); ``extra`` adds or overrides."""
    params = {'weights': resolve_weights(args.weights), 'device': args.device,
              'precision': getattr(args, 'precision', 'auto'),
              'runtime': getattr(args, 'runtime', 'auto')}
    if params['precision'] == 'int8':
        params.update(calibration=args.calibration, int8_max_drop=args.int8_max_drop)
    for name in ('scorer', 'threshold'):
        if hasattr(args, name):
            params[name] = getattr(args, name)
    if args.backbone:
        params['backbone'] = args.backbone
    if getattr(args, 'temperature', None) is not None:
        params['temperature'] = args.temperature
    if args.input_size:
        params.update(input_height=args.input_size[0], input_width=args.input_size[1])
    params.update(extra)
    return params


def build_detector(args, *, scorer: str = 'msp') -> Detector:
    detector = Detector.from_checkpoint(
        resolve_weights(args.weights), backbone=args.backbone,
        scorer=getattr(args, 'scorer', scorer), temperature=getattr(args, 'temperature', None),
        threshold=getattr(args, 'threshold', 'auto'), device=args.device,
        precision=getattr(args, 'precision', 'auto'), runtime=getattr(args, 'runtime', 'auto'),
        input_size_hw=args.input_size, calibration=getattr(args, 'calibration', ''),
        int8_max_drop=getattr(args, 'int8_max_drop', DEFAULT_INT8_MAX_DROP))
    for note in detector.notes:  # the cache's warnings, the layers int8 left in float
        print(f'note: {note}')
    return detector


def warn_if_untrained(detector: Detector) -> None:
    if not detector.info.pretrained:
        print('WARNING: the network is RANDOMLY INITIALISED (no trained weights): its labels '
              'and anomaly scores are meaningless.')


def add_frames_args(parser: argparse.ArgumentParser, flag: str, *, required: bool = False):
    """``flag`` (a folder of images or a rosbag2) with ``--topic``, ``--every``, ``--limit``:
    a camera's unlabeled frames, read by ``unlabeled_frames``."""
    group = parser.add_argument_group('unlabeled frames of the camera')
    group.add_argument(flag, required=required, default=None, metavar='DIR|BAG',
                       help='a folder of images (searched recursively) or a rosbag2 (MCAP / '
                       'sqlite3)')
    group.add_argument('--topic', default=None, help='the bag\'s image topic (default '
                       '/camera/image_raw or /camera/image_raw/compressed)')
    group.add_argument('--every', type=int, default=1, help='take every Nth frame')
    group.add_argument('--limit', type=int, default=0, help='at most this many frames (0: all)')
    return group


def _folder_frames(folder, every, limit, skipped):
    paths = sorted(p for p in glob.glob(os.path.join(folder, '**', '*'), recursive=True)
                   if p.lower().endswith(IMAGE_EXTENSIONS))
    paths = paths[::every]
    if limit:
        paths = paths[:limit]
    for path in paths:
        try:
            image = read_rgb(path)
        except AnomsegError as exc:
            skipped.append(str(exc))
            continue
        name = os.path.splitext(os.path.relpath(path, folder))[0].replace(os.sep, '__')
        yield name, image


def _bag_frames(bag, topic, every, limit, skipped):
    from rosbag_tools.bags import BagDamage, read_frames
    damage = BagDamage()
    taken = 0
    for index, frame in enumerate(read_frames(bag, image_topic=topic, damage=damage)):
        if index % every:
            continue
        if limit and taken >= limit:
            break
        taken += 1
        yield f'{index:06d}_{frame.stamp_ns}', frame.image
    if damage:
        skipped.append(f'{bag}: {damage.summary()}')


def unlabeled_frames(args, skipped: List[str], *, option: str = 'frames'):
    """``(name, RGB)`` of the frames ``add_frames_args`` asked for: a folder of images, or a
    bag's image topic; what cannot be read is named in ``skipped`` and left out."""
    path = getattr(args, option)
    if args.every < 1 or args.limit < 0:
        raise ConfigError('--every is at least 1 and --limit at least 0')
    is_bag = os.path.exists(os.path.join(path, 'metadata.yaml'))
    if os.path.isdir(path) and not is_bag:
        if args.topic:
            raise ConfigError(f'--topic is for a bag; {path!r} is a folder of images')
        return _folder_frames(path, args.every, args.limit, skipped)
    if not os.path.exists(path):
        raise DatasetError(f'--{option} {path!r} does not exist')
    return _bag_frames(path, args.topic, args.every, args.limit, skipped)
