"""``anomseg train --data CITYSCAPES --out DIR``: train a backbone on Cityscapes.

Also ``python -m anomseg_ros.cli.train ARGS`` (the same options), which torchrun starts once
per GPU. The options are ``TrainConfig``'s; ``anomseg_ros.training.train(config)`` is the
library's way in."""
import argparse
import dataclasses
import sys

from anomseg_ros.backbones import list_backbones
from anomseg_ros.backbones.resnet import SSL_FORMATS
from anomseg_ros.cli.common import as_flags, parse_size, parse_vector, say_as_flags
from anomseg_ros.errors import AnomsegError
from anomseg_ros.pipeline import DEVICES
from anomseg_ros.training.config import AMP_CHOICES, TrainConfig
from anomseg_ros.training.engine import ERFNET_LR
from anomseg_ros.training.losses import LOSSES
from anomseg_ros.training.train import MULTI_GPU_HELP, train

DEFAULTS = TrainConfig(data='', out='')
DESCRIPTION = ('Trains a backbone on the 19 Cityscapes classes (20 with --void) with ERFNet\'s '
               'recipe (Adam, poly learning rate, class-weighted loss); validates mIoU every '
               'epoch and writes OUT/last.pt and OUT/best.pt.')


def add_parser(verbs):
    parser = verbs.add_parser('train', help='train a backbone on Cityscapes',
                              description=DESCRIPTION, epilog=MULTI_GPU_HELP)
    add_arguments(parser)
    parser.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of parsed ``anomseg train`` arguments."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def run(args) -> int:
    return train(config_from_args(args), say=say_as_flags(args))


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The training options, one per ``TrainConfig`` field (shared by ``anomseg train`` and
    ``python -m anomseg_ros.cli.train``); defaults come from ``TrainConfig``."""
    parser.add_argument('--data', required=True, metavar='ROOT',
                        help='Cityscapes root: leftImg8bit/{train,val}/CITY/*_leftImg8bit.png and'
                        ' gtFine/{train,val}/CITY/*_gtFine_labelTrainIds.png (or _labelIds.png)')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='output folder for last.pt and best.pt (created)')
    parser.add_argument('--backbone', default=DEFAULTS.backbone, choices=list_backbones())
    parser.add_argument('--loss', default='ce', metavar='SPEC',
                        help=f'training loss: terms joined by "+" with optional weights, e.g. '
                        f'"eiml+focal" or "0.5*logitnorm+ce"; losses: {", ".join(LOSSES)} '
                        f'(default ce). eiml puts the IsoMax+ distance head on the model')
    parser.add_argument('--focal-gamma', type=float, default=DEFAULTS.focal_gamma,
                        help='focal loss gamma (default 2)')
    parser.add_argument('--logitnorm-tau', type=float, default=DEFAULTS.logitnorm_tau,
                        help='LogitNorm temperature tau (default 0.04)')
    parser.add_argument('--entropic-scale', type=float, default=DEFAULTS.entropic_scale,
                        help='EIML entropic scale (default 10)')
    parser.add_argument('--void', action='store_true',
                        help='train the void pixels (255) as a 20th class, for --scorer void '
                        '(paper 000 eq. 11)')
    parser.add_argument('--pretrained-backbone', default=None, metavar='PATH',
                        help='resnet50 only: self-supervised ResNet-50 weights (Barlow Twins, '
                        'MoCo v2 or SimSiam checkpoint as published)')
    parser.add_argument('--ssl-format', default='auto', choices=['auto', *SSL_FORMATS],
                        help='the format of --pretrained-backbone (default: from its keys)')
    parser.add_argument('--freeze-backbone', action='store_true',
                        help='train only the classifier (resnet50; paper 000 Tables 5-6)')
    parser.add_argument('--epochs', type=int, default=DEFAULTS.epochs,
                        help=f'epochs in all (default {DEFAULTS.epochs})')
    parser.add_argument('--batch-size', type=int, default=DEFAULTS.batch_size,
                        help=f'per process (default {DEFAULTS.batch_size})')
    parser.add_argument('--input-size', type=parse_size, default=None, metavar='WxH',
                        help='crop size in training and network input size in validation '
                        '(default 512x256, or the --resume checkpoint\'s)')
    parser.add_argument('--crop-size', type=parse_size, default=None, metavar='WxH',
                        help='training crop (default: the input size); images are scaled as '
                        'for the input size first, so a smaller crop keeps the objects\' scale '
                        'and makes each step cheaper')
    parser.add_argument('--class-uniform', type=float, default=DEFAULTS.class_uniform,
                        metavar='P',
                        help='probability that a training crop is centred on a class drawn '
                        'uniformly from those in the image, so thin and rare classes are seen '
                        'as often as large ones (default 0.5; 0 = plain random crops)')
    parser.add_argument('--repeat-threshold', type=float, default=DEFAULTS.repeat_threshold,
                        metavar='T',
                        help='repeat-factor sampling: draw the images of classes seen in fewer '
                        'than a fraction T of the images more often, by sqrt(T / fraction) '
                        '(e.g. 0.1; default 0 = every image equally)')
    parser.add_argument('--lr', type=float, default=DEFAULTS.lr,
                        help=f'Adam learning rate, poly-decayed per iteration (default '
                        f'{ERFNET_LR})')
    parser.add_argument('--class-weights', action=argparse.BooleanOptionalAction, default=True,
                        help='ERFNet class weights 1/ln(1.10 + p) from the training labels')
    parser.add_argument('--mean', type=parse_vector, default=None, metavar='R,G,B',
                        help='normalisation of [0,1] RGB (default 0,0,0 as the public ERFNet, '
                        'or the --init-weights checkpoint\'s)')
    parser.add_argument('--std', type=parse_vector, default=None, metavar='R,G,B',
                        help='default 1,1,1 (or the --init-weights checkpoint\'s)')
    parser.add_argument('--workers', type=int, default=DEFAULTS.workers,
                        help='data loading processes per training process (default 2)')
    parser.add_argument('--cache', default=None, metavar='DIR',
                        help='decode each training image once into DIR (raw arrays, about 2 MB '
                        'a 1024x512 image) and read it back from there: no PNG decoding per '
                        'step, which on a small CPU costs as much as the training step')
    parser.add_argument('--resume', default=None, metavar='CKPT',
                        help='continue the training saved in CKPT (OUT/last.pt): weights, '
                        'optimizer, learning rate schedule, epoch, best mIoU and history')
    parser.add_argument('--init-weights', default=None, metavar='CKPT',
                        help='start from these weights (e.g. erfnet_pretrained.pth; a void '
                        'output is dropped) with a new optimizer')
    parser.add_argument('--max-iters-per-epoch', type=int, default=None, metavar='N',
                        help='end each epoch after N iterations (for slow machines)')
    parser.add_argument('--val-limit', type=int, default=None, metavar='N',
                        help='validate on the first N val images only')
    parser.add_argument('--time-budget-min', type=float, default=None, metavar='M',
                        help='stop after the epoch in which M minutes are exceeded')
    parser.add_argument('--device', default='auto', choices=DEVICES)
    parser.add_argument('--amp', default='auto', choices=AMP_CHOICES,
                        help='mixed precision: auto (default) = bfloat16 autocast on CPUs with '
                        'AMX or AVX512-BF16, float16 with gradient scaling on CUDA, float32 '
                        'elsewhere; off = float32; bf16 / fp16 to force one')
    parser.add_argument('--no-amp', dest='amp', action='store_const', const='off',
                        help='same as --amp off')
    parser.add_argument('--sync-bn', action='store_true',
                        help='synchronise batch norm statistics across GPUs')
    parser.add_argument('--seed', type=int, default=DEFAULTS.seed,
                        help='seed of the initial weights, data order and augmentation')
    # the core names fields in its errors and progress lines; they are said as flags
    parser.set_defaults(option_fields=frozenset(f.name for f in dataclasses.fields(TrainConfig)))
    return parser


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The parser of ``python -m anomseg_ros.cli.train`` (as ``anomseg train``)."""
    parser = argparse.ArgumentParser(prog='python -m anomseg_ros.cli.train',
                                     description=DESCRIPTION, epilog=MULTI_GPU_HELP,
                                     add_help=add_help)
    return add_arguments(parser)


def cli_main(argv=None) -> int:
    """Entry point of ``python -m anomseg_ros.cli.train`` (and torchrun)."""
    args = get_args_parser().parse_args(argv)
    try:
        return run(args)
    except AnomsegError as exc:
        print(f'train: error: {as_flags(str(exc), args.option_fields)}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == '__main__':
    sys.exit(cli_main())
