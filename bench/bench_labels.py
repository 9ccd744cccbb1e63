"""The labels' argmax inside the OpenVINO graph (a TopK output) against PyTorch's ``max`` on
the logits, in the whole ``Detector.predict`` at camera resolution, interleaved in one run.

    .venv/bin/python bench/bench_labels.py [--weights W] [--sizes 1024x512,512x256]
        [--precision auto|bf16|fp32] [--frames N]

Prints the median ms of ``predict`` and of its score stage (the scorer and the labels) for
both, and whether the labels are the same.
"""
import argparse
import statistics
import time

import numpy as np

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector
from anomseg_ros.runtimes import exported


def detector(weights, size_hw, precision, labels):
    """A Detector on OpenVINO whose graph gives the labels (or not)."""
    original = exported.OpenVinoModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **{**kwargs, 'labels': labels})
    exported.OpenVinoModel.__init__ = init
    try:
        return Detector.from_checkpoint(weights, runtime='openvino', precision=precision,
                                        input_size_hw=size_hw)
    finally:
        exported.OpenVinoModel.__init__ = original


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', default=None)
    parser.add_argument('--sizes', default='1024x512,512x256')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--frames', type=int, default=15)
    args = parser.parse_args()
    weights = resolve_weights(args.weights)
    print('| input | labels from | predict ms | score stage ms | same labels |')
    print('| --- | --- | --- | --- | --- |')
    for size_hw in parse_sizes(args.sizes):
        image = np.random.default_rng(0).integers(0, 256, (*size_hw, 3), dtype=np.uint8)
        both = {'OpenVINO graph': detector(weights, size_hw, args.precision, True),
                'PyTorch max': detector(weights, size_hw, args.precision, False)}
        times = {name: ([], []) for name in both}
        for name, d in both.items():
            d.predict(image)  # warm-up
        for _ in range(args.frames):
            for name, d in both.items():  # interleaved: both see the same machine state
                started = time.perf_counter()
                result = d.predict(image)
                times[name][0].append(1e3 * (time.perf_counter() - started))
                times[name][1].append(result.timings_ms['score'])
        same = np.array_equal(both['OpenVINO graph'].predict(image).labels,
                              both['PyTorch max'].predict(image).labels)
        for name, (total, score) in times.items():
            print(f'| {size_hw[1]}x{size_hw[0]} | {name} | {statistics.median(total):.1f} | '
                  f'{statistics.median(score):.1f} | {"yes" if same else "NO"} |')


if __name__ == '__main__':
    main()
