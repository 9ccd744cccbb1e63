"""``anomseg train-anomaly --method pebal|sleeg|synboost``: a learned anomaly score on a
checkpoint."""
import argparse

from anomseg_ros.cli.common import parse_size
from anomseg_ros.methods import list_methods, pebal, sleeg
from anomseg_ros.methods.outliers import PASTE_SCALE
from anomseg_ros.pipeline import DEVICES
from anomseg_ros.training.config import AMP_CHOICES
from anomseg_ros.training import train_anomaly

DESCRIPTION = (train_anomaly.__doc__.split('\n\n')[0] + ' ' +
               train_anomaly.__doc__.split('\n\n')[2].replace('\n', ' '))


def add_parser(verbs):
    parser = verbs.add_parser(
        'train-anomaly', help='fine-tune PEBAL, or train SLEEG or SynBoost, on a segmentation '
        'checkpoint',
        description=DESCRIPTION)
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args) -> int:
    return train_anomaly.train_anomaly(args)


def add_arguments(parser: argparse.ArgumentParser, *,
                  data: bool = True) -> argparse.ArgumentParser:
    """The training options; ``data=False`` leaves out ``--data`` and makes ``--method``
    optional (``anomseg adapt`` writes the data and has a default method)."""
    parser.add_argument('--method', required=data, choices=list_methods(),
                        default=None if data else 'synboost')
    parser.add_argument('--checkpoint', required=True, metavar='CKPT',
                        help='the trained segmentation model to build on')
    if data:
        parser.add_argument('--data', required=True, metavar='ROOT',
                            help='inlier training images: a Cityscapes-layout root')
    parser.add_argument('--out', required=True, metavar='DIR')
    parser.add_argument('--epochs', type=int, default=20, help='(default 20, as PEBAL)')
    parser.add_argument('--iters-per-epoch', type=int, default=200)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--lr', type=float, default=None,
                        help='Adam learning rate (default: the method\'s: PEBAL 1e-5 as its '
                        'paper; SLEEG 1e-3 for the new head, which paper 003 does not state; '
                        'SynBoost 1e-4 for the dissimilarity network)')
    parser.add_argument('--input-size', type=parse_size, default=None, metavar='WxH',
                        help='the scale images are brought to (default: the checkpoint\'s)')
    parser.add_argument('--crop-size', type=parse_size, default=None, metavar='WxH')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--amp', default='auto', choices=AMP_CHOICES,
                        help='mixed precision of the forward pass: auto (default) = bf16 '
                        'autocast on CPUs with AMX or AVX512-BF16, fp16 with gradient scaling '
                        'on CUDA, else float32; off = float32 (the losses are computed in '
                        'float32 either way)')
    parser.add_argument('--cache', default=None, metavar='DIR',
                        help='decode each training image once into DIR and read it back from '
                        'there (as anomseg train --cache; the same folder serves both)')
    parser.add_argument('--device', default='auto', choices=DEVICES)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--resume', action='store_true', help='continue OUT/last.pt')
    parser.add_argument('--stage', default='all',
                        help='all (default), or one stage of the method alone on OUT/last.pt: '
                        'synboost has generator, dissimilarity and ensemble; pebal and sleeg '
                        'one, train')
    parser.add_argument('--time-budget-min', type=float, default=None)
    group = parser.add_argument_group('PEBAL (paper 004)')
    group.add_argument('--outliers', default=None, metavar='DIR',
                       help='outlier cut-outs for AnomalyMix: RGBA images, or images/ + masks/')
    group.add_argument('--mix-probability', type=float, default=0.5,
                       help='share of training images that get an outlier pasted')
    group.add_argument('--paste-scale', default='%g,%g' % PASTE_SCALE, metavar='MIN,MAX',
                       help='a pasted outlier\'s longer side as a share of the image width, '
                       'drawn uniformly (AnomalyMix, SynBoost\'s void source and adapt\'s pasted '
                       'track; default %(default)s)')
    group.add_argument('--pebal-lambda', type=float, default=pebal.LAMBDA)
    group.add_argument('--margins', default='paper', metavar='paper|auto|M_IN,M_OUT',
                       help='energy margins of eqs. 6-7: the paper\'s -12,-6 (default; set for '
                            'models with inlier energies far below -12), auto (m_in at the '
                            'median inlier energy of this model, m_out 6 above), or two numbers')
    group.add_argument('--fixed-penalty', type=float, default=None, metavar='A',
                       help='ablation: a constant abstention penalty instead of (-E)^2')
    group.add_argument('--no-regulariser', action='store_true',
                       help='ablation: without the smoothness / sparsity term (eq. 8)')
    group.add_argument('--reg-form', default='paper', choices=pebal.REG_FORMS,
                       help='eq. 8 as printed (default), or as the authors\' code computes it')
    group.add_argument('--kernel-size', type=int, default=7, help='inference smoothing')
    group.add_argument('--sigma', type=float, default=1.0, help='inference smoothing')
    group = parser.add_argument_group('SLEEG (paper 003)')
    group.add_argument('--estimators', default='tae+tore',
                       help='ablation: tae, tore or tae+tore (default)')
    group.add_argument('--patch-shape', default='convex', choices=('convex', 'square'))
    group.add_argument('--no-refinement', action='store_true',
                       help='ablation: every pasted pixel is an anomaly')
    group.add_argument('--static-margin', action='store_true',
                       help='ablation: margin gamma without the JEM terms (Table 4)')
    group.add_argument('--num-patches', type=int, default=sleeg.NUM_PATCHES)
    group.add_argument('--margin', type=float, default=sleeg.GAMMA)
    group.add_argument('--lam', type=float, default=sleeg.LAMBDA)
    group.add_argument('--warmup', type=float, default=0.15,
                       help='share of the iterations that refine with the JEM score (paper: '
                       '6,000 of 40,000)')
    group.add_argument('--head-channels', type=int, default=32)
    group = parser.add_argument_group(
        'SynBoost (paper 002)', 'the dissimilarity network trains for --epochs at --lr; the void '
        'source pastes --outliers objects')
    group.add_argument('--generator-epochs', type=int, default=10,
                       help='epochs of the label-to-image generator (default 10; 0 with '
                       '--generator-from)')
    group.add_argument('--generator-lr', type=float, default=2e-4)
    group.add_argument('--generator-from', default=None, metavar='CKPT',
                       help='start from the generator of this SynBoost checkpoint (same '
                       'segmentation model); with --generator-epochs 0 it is used as it is, '
                       'e.g. for ablations of the dissimilarity network')
    group.add_argument('--generator-channels', type=int, default=32,
                       help='generator width c (4c channels at 1/8 resolution; default 32, '
                       'the light variant 16)')
    group.add_argument('--dissimilarity-width', type=int, default=32)
    group.add_argument('--perceptual-weight', type=float, default=1.0,
                       help='weight of the feature-matching loss of the generator')
    group.add_argument('--features', default='segmenter', choices=('segmenter', 'vgg16'),
                       help='image features of V and of the dissimilarity encoders: the '
                       'segmentation model\'s encoder (default) or an ImageNet VGG-16 (--vgg16)')
    group.add_argument('--vgg16', default=None, metavar='PATH',
                       help='a torchvision vgg16 state dict (vgg16-397923af.pth), for '
                       '--features vgg16')
    group.add_argument('--void-share', type=float, default=0.5,
                       help='share of training images whose anomaly is a pasted void object; '
                       'the rest get label swaps (0: label swaps only, an ablation)')
    group.add_argument('--no-uncertainty', action='store_true',
                       help='ablation: the dissimilarity network without the uncertainty maps')
    group.add_argument('--ensemble-tracks', default=None, metavar='DIR[,DIR]',
                       help='validation anomaly tracks for the ensemble weights (not the test '
                       'tracks)')
    group.add_argument('--ensemble-step', type=float, default=0.1,
                       help='grid step of the ensemble weights (default 0.1)')
    group.add_argument('--ensemble-limit', type=int, default=0, metavar='N',
                       help='first N images of each ensemble track (default all)')
    return parser
