"""``anomseg info CHECKPOINT``: what a weights file holds."""
import json
import os

from anomseg_ros.checkpoint import count_parameters, export_checkpoint, load_model


def add_parser(verbs):
    parser = verbs.add_parser('info', help='describe a checkpoint',
                              description='Loads a checkpoint and prints its backbone, classes, '
                              'normalisation, input size and parameter count.')
    parser.add_argument('checkpoint')
    parser.add_argument('--backbone', default=None, help='backbone of a plain state dict')
    parser.add_argument('--json', action='store_true', help='print JSON')
    parser.add_argument('--export', metavar='OUT', default=None,
                        help='also write OUT: the weights, metadata and training record without '
                        'optimizer state (what to ship, e.g. models/erfnet_synthetic.pt)')
    parser.set_defaults(run=run)


def run(args) -> int:
    model, info = load_model(args.checkpoint, backbone=args.backbone)
    description = {'checkpoint': args.checkpoint, **info.to_dict(),
                   'parameters': count_parameters(model)}
    if args.export:
        kept = export_checkpoint(args.checkpoint, args.export)
        description['exported_to'] = args.export
        description['exported_bytes'] = os.path.getsize(args.export)
        if 'best_miou' in kept:
            description['best_miou'] = kept['best_miou']
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    for key, value in description.items():
        if key == 'class_names':
            value = ', '.join(value)
        print(f'{key:>16}: {value}')
    return 0
