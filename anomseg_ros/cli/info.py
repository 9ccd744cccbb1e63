"""``anomseg info CHECKPOINT``: what a weights file holds."""
import json

from anomseg_ros.checkpoint import count_parameters, load_model


def add_parser(verbs):
    parser = verbs.add_parser('info', help='describe a checkpoint',
                              description='Loads a checkpoint and prints its backbone, classes, '
                              'normalisation, input size and parameter count.')
    parser.add_argument('checkpoint')
    parser.add_argument('--backbone', default=None, help='backbone of a plain state dict')
    parser.add_argument('--json', action='store_true', help='print JSON')
    parser.set_defaults(run=run)


def run(args) -> int:
    model, info = load_model(args.checkpoint, backbone=args.backbone)
    description = {'checkpoint': args.checkpoint, **info.to_dict(),
                   'parameters': count_parameters(model)}
    if args.json:
        print(json.dumps(description, indent=2))
        return 0
    for key, value in description.items():
        if key == 'class_names':
            value = ', '.join(value)
        print(f'{key:>16}: {value}')
    return 0
