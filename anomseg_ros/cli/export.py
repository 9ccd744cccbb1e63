"""``anomseg export CHECKPOINT --format onnx|openvino --out PATH``: a model for other runtimes."""
import json
import sys

from anomseg_ros.cli.common import parse_size
from anomseg_ros.paths import resolve_weights
from anomseg_ros.runtimes import export_model, FORMATS


def add_parser(verbs):
    parser = verbs.add_parser(
        'export', help='write a checkpoint as ONNX or OpenVINO IR (optionally int8)',
        description='Writes the network of CHECKPOINT (logits out, the ModelInfo in the '
        'file\'s metadata) as ONNX (opset 17; ONNX Runtime, TensorRT: trtexec --onnx=FILE '
        '--fp16) or OpenVINO IR (.xml + .bin). --int8 quantizes the IR with NNCF on images of '
        '--calibration. The node and anomseg eval / detect run the result as --weights FILE.')
    parser.add_argument('checkpoint', help='anomseg checkpoint or plain state dict')
    parser.add_argument('--format', required=True, choices=FORMATS)
    parser.add_argument('--out', required=True, help='FILE.onnx or FILE.xml')
    parser.add_argument('--input-size', type=parse_size, default=None, metavar='WxH',
                        help='input size (default: the checkpoint\'s)')
    parser.add_argument('--dynamic', action='store_true',
                        help='ONNX only: any input height / width and batch size')
    parser.add_argument('--int8', action='store_true',
                        help='OpenVINO only: post-training int8 quantization with NNCF')
    parser.add_argument('--calibration', default=None, metavar='DIR',
                        help='images to calibrate --int8 on (a few hundred frames of your '
                        'camera; anomseg synth ones otherwise)')
    parser.add_argument('--calibration-limit', type=int, default=300, metavar='N',
                        help='use at most N calibration images (default 300)')
    parser.add_argument('--int8-max-drop', type=float, default=None, metavar='POINTS',
                        help='int8 under NNCF\'s accuracy control: layers go back to float '
                        'until, on the calibration images, the FPR95 of the int8 MaxLogit '
                        'score with the float model\'s most anomalous tenth of the pixels as '
                        'the anomalies is at most POINTS (float: 0; no labels needed; slower '
                        'to export, a little slower to run)')
    parser.set_defaults(run=run, option_fields={  # export_model's parameters, as flags
        'fmt': '--format', 'calibration_dir': '--int8 --calibration', 'max_drop':
        '--int8-max-drop', 'input_size': '--input-size'})


def run(args) -> int:
    if args.int8 and not args.calibration:
        print('anomseg export: error: --int8 needs --calibration DIR (images to calibrate on)',
              file=sys.stderr)
        return 2
    written = export_model(resolve_weights(args.checkpoint), args.format, args.out,
                           input_size_hw=args.input_size, dynamic=args.dynamic,
                           calibration_dir=args.calibration if args.int8 else None,
                           calibration_limit=args.calibration_limit,
                           max_drop=args.int8_max_drop)
    print(json.dumps(written))
    return 0
