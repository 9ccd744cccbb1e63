"""Median per-frame time of the bare network forward and of the whole node path, in one run.

The node path is: publish a camera frame over DDS -> the detector node (its own process)
decodes, runs the pipeline and publishes -> the score image is received here. The node's
input size is set to the frame size, so both columns run the network at the same resolution.

    .venv/bin/python bench/bench_node.py [--weights W] [--device cpu|cuda] [--frames N]
        [--runtime auto|torch|openvino] [--sizes 512x256,1024x512]
"""
import argparse
import statistics
import time

import numpy as np
import torch

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.pipeline import Detector, resolve_device
from anomseg_ros.precision import autocast, to_fast_layout
from anomseg_ros.runtimes import RUNTIMES


def bench_forward(detector, device, size_wh, frames):
    """The network alone, in the precision and layout the node uses (``precision`` auto)."""
    image = np.random.default_rng(0).integers(0, 256, (size_wh[1], size_wh[0], 3),
                                              dtype=np.uint8)
    batch = detector.preprocess([image])
    times = []
    with torch.inference_mode(), autocast(device, detector.dtype):
        for i in range(frames + 2):
            start = time.perf_counter()
            detector.model(to_fast_layout(batch) if detector.channels_last else batch)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if i >= 2:  # warm-up
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_node(weights, device, size_wh, frames, outputs, runtime):
    from anomseg_ros.ros.client import live_detector
    from anomseg_ros.ros.outputs import OUTPUTS
    width, height = size_wh
    params = {'weights': weights, 'device': device.type, 'input_width': width,
              'input_height': height, 'runtime': runtime}
    params.update({f'publish.{name}': name in outputs for name in OUTPUTS})
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    times = []
    with live_detector(f'/anomseg_bench_{width}', params=params, outputs=outputs,
                       timeout=120) as live:
        for i in range(frames + 2):
            stamp_ns = 10_000_000_000 + i
            start = time.perf_counter()
            live.client.publish_rgb(image, stamp_ns)
            if live.client.wait_outputs(stamp_ns, timeout=60) is None:
                raise RuntimeError(f'frame {i} at {width}x{height} got no answer')
            if i >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', default='random',
                        help='checkpoint; timing does not depend on the values')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--frames', type=int, default=15, help='timed frames per cell')
    parser.add_argument('--runtime', default='auto', choices=RUNTIMES)
    parser.add_argument('--sizes', default='512x256,1024x512', help='input sizes, WxH,...')
    args = parser.parse_args()

    from anomseg_ros.ros.outputs import OUTPUTS
    device = resolve_device(args.device)
    rows = []
    for height, width in parse_sizes(args.sizes):
        size_wh = (width, height)
        detector = Detector.from_checkpoint(args.weights, device=str(device),
                                            runtime=args.runtime,
                                            input_size_hw=(height, width))
        forward = bench_forward(detector, device, size_wh, args.frames)
        score_only = bench_node(args.weights, device, size_wh, args.frames, ('anomaly_score',),
                                args.runtime)
        all_outputs = bench_node(args.weights, device, size_wh, args.frames, OUTPUTS,
                                 args.runtime)
        rows.append((size_wh, forward, score_only, all_outputs))

    info = detector.info
    print(f'\n{info.backbone} on {device}, runtime {detector.runtime}, {detector.precision_name} '
          f'({torch.get_num_threads()} CPU threads), median of {args.frames} frames, ms per '
          f'frame')
    print(f'| input | bare forward | node path, score only | ratio | node path, all '
          f'{len(OUTPUTS)} outputs | ratio |')
    print('| --- | --- | --- | --- | --- | --- |')
    for (w, h), forward, score_only, all_outputs in rows:
        print(f'| {w}x{h} | {1000 * forward:.1f} | {1000 * score_only:.1f} | '
              f'{score_only / forward:.2f} | {1000 * all_outputs:.1f} | '
              f'{all_outputs / forward:.2f} |')


if __name__ == '__main__':
    main()
