"""The fast paths in one run: per-frame time of each runtime and precision at each size, its
speed-up over float32 PyTorch, and what it does to the anomaly scores; then a training step in
float32 and in the fast precision.

Each path is timed in a process of its own (four warm-up frames, then timed ones), the paths
taking turns for a few rounds so a noisy machine slows them alike; each figure is the median
over all its timed frames. With the reference data (``--data`` folder of a
benchmark in the images/ + labels_masks/ layout and ``--weights``), the AuPRC / FPR95 of
MaxLogit on it are reported per path beside float32 PyTorch's.

    .venv/bin/python bench/bench_precision.py [--weights W] [--data DIR] [--frames 7]
        [--int8-calibration DIR] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.pipeline import Detector
from anomseg_ros.precision import autocast, resolve_precision, to_fast_layout
from anomseg_ros.sizes import format_size, parse_size


def torch_forward(weights, size_hw, *, precision, channels_last):
    detector = Detector.from_checkpoint(weights, device='cpu', precision=precision,
                                        input_size_hw=size_hw)
    if not channels_last:  # what the node did before: default layout, float32
        detector.model = detector.model.to(memory_format=torch.contiguous_format)
        detector.channels_last = False
    return detector


def paths(weights, size_hw, exported):
    """(name, detector factory) of every path at ``size_hw``."""
    found = [('PyTorch fp32, default layout', lambda: torch_forward(
                 weights, size_hw, precision='fp32', channels_last=False)),
             ('PyTorch fp32, channels_last', lambda: torch_forward(
                 weights, size_hw, precision='fp32', channels_last=True))]
    fast = resolve_precision('auto', torch.device('cpu'))
    if fast != torch.float32:
        found.append(('PyTorch bf16 + channels_last (auto)', lambda: torch_forward(
            weights, size_hw, precision='bf16', channels_last=True)))
    if 'onnx' in exported:
        found.append(('ONNX Runtime fp32', lambda: Detector.from_checkpoint(
            exported['onnx'], input_size_hw=size_hw)))
    if 'openvino' in exported:
        found.append(('OpenVINO f32', lambda: Detector.from_checkpoint(
            exported['openvino'], precision='fp32', input_size_hw=size_hw)))
        if fast != torch.float32:
            found.append(('OpenVINO bf16, image layer f32 (auto)',
                          lambda: Detector.from_checkpoint(exported['openvino'], precision='bf16',
                                                           input_size_hw=size_hw)))
    if 'int8' in exported:
        found.append(('OpenVINO int8 (NNCF)', lambda: Detector.from_checkpoint(
            exported['int8'], input_size_hw=size_hw)))
    return found


def frame_times(detector, size_hw, frames, warm=4):
    """Seconds per ``predict`` of ``frames`` frames after ``warm`` untimed ones."""
    image = np.random.default_rng(0).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
    times = []
    for index in range(warm + frames):
        start = time.perf_counter()
        detector.predict(image)
        if index >= warm:
            times.append(time.perf_counter() - start)
    return times


def time_paths(weights, size_hw, exported, frames, rounds):
    """Median ms per frame of each path, each timed in a process of its own (runtimes' thread
    pools disturb one another in one process: ONNX Runtime's and OpenVINO's threads wait
    spinning), the paths taking turns for ``rounds`` rounds so a noisy machine slows them
    alike."""
    names = [name for name, _ in paths(weights, size_hw, exported)]
    per_round = -(-frames // rounds)
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            child = subprocess.run(
                [sys.executable, __file__, '--child', name, '--weights', weights,
                 '--child-size', format_size(size_hw), '--frames', str(per_round),
                 '--child-exported', json.dumps(exported)],
                check=True, capture_output=True, text=True)
            times[name] += json.loads(child.stdout.strip().splitlines()[-1])
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def run_child(args) -> int:
    size_hw = parse_size(args.child_size)
    factories = dict(paths(args.weights, size_hw, json.loads(args.child_exported)))
    print(json.dumps(frame_times(factories[args.child](), size_hw, args.frames)))
    return 0


def scores(detector, data):
    from anomseg_ros.data.anomaly import AnomalyDataset
    from anomseg_ros.evaluation.anomaly import evaluate_anomaly
    result = evaluate_anomaly(detector, AnomalyDataset(data), ['maxlogit'],
                              resolution='network')['maxlogit']
    return 100 * result['auprc'], 100 * result['fpr95']


def training_step_ms(dtype, steps=6, batch=8, size_hw=(128, 256)):
    from anomseg_ros.backbones import create_backbone
    from anomseg_ros.training.engine import make_optimizer
    from anomseg_ros.training.losses import make_criterion
    torch.manual_seed(0)
    model = to_fast_layout(create_backbone('erfnet', num_classes=19)).train()
    optimizer, criterion = make_optimizer(model), make_criterion()
    images = to_fast_layout(torch.rand(batch, 3, *size_hw))
    labels = torch.randint(0, 19, (batch, *size_hw))
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        with autocast(torch.device('cpu'), dtype):
            loss = criterion(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', default='random')
    parser.add_argument('--data', default=None, help='anomaly benchmark folder for the scores')
    parser.add_argument('--frames', type=int, default=7)
    parser.add_argument('--sizes', default='512x256,1024x512', help='input sizes, WxH,...')
    parser.add_argument('--rounds', type=int, default=3,
                        help='turns each path takes, in a fresh process each')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    parser.add_argument('--child-size', help=argparse.SUPPRESS)
    parser.add_argument('--child-exported', help=argparse.SUPPRESS)
    parser.add_argument('--int8-calibration', default=None, metavar='DIR',
                        help='images to calibrate an int8 OpenVINO model on (else no int8 row)')
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    if args.child:
        return run_child(args)
    from anomseg_ros.runtimes import export_model
    with tempfile.TemporaryDirectory() as tmp:
        print(f'{os.cpu_count()} CPU threads; torch {torch.__version__}; weights {args.weights};'
              f' median of {args.frames} frames, each path in its own process, {args.rounds} '
              f'turns each')
        print('| path | input | ms | speed-up over fp32 PyTorch | MaxLogit AuPRC / FPR95 |')
        print('| --- | --- | --- | --- | --- |')
        for size_hw in parse_sizes(args.sizes):
            height, width = size_hw
            exported = {}
            for key, fmt, suffix, calibration in (
                    ('onnx', 'onnx', 'onnx', None), ('openvino', 'openvino', 'xml', None),
                    ('int8', 'openvino', 'xml', args.int8_calibration)):
                if key == 'int8' and not calibration:
                    continue
                path = os.path.join(tmp, f'{key}_{width}.{suffix}')
                try:
                    export_model(args.weights, fmt, path, input_size_hw=size_hw,
                                 calibration_dir=calibration)
                    exported[key] = path
                except ImportError as exc:
                    print(f'(no {key} row: {exc})')
            timings = time_paths(args.weights, size_hw, exported, args.frames, args.rounds)
            base = timings['PyTorch fp32, default layout']
            for name, factory in paths(args.weights, size_hw, exported):
                quality = '-'
                if args.data:
                    quality = '%.2f / %.2f' % scores(factory(), args.data)
                print(f'| {name} | {width}x{height} | {timings[name]:.1f} | '
                      f'{base / timings[name]:.2f} | {quality} |', flush=True)
    fp32 = training_step_ms(torch.float32)
    fast_dtype = resolve_precision('auto', torch.device('cpu'))
    fast = training_step_ms(fast_dtype)
    print(f'\ntraining step, ERFNet, batch 8 of 256x128, channels_last: fp32 {fp32:.0f} ms, '
          f'{fast_dtype} autocast {fast:.0f} ms, speed-up {fp32 / fast:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
