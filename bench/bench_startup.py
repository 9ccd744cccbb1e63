"""Where the node's start-up goes, and how long it takes to answer and to exit.

In fresh processes (so nothing is imported or compiled yet in them), with the OpenVINO cache
warm: the time to import torch, the package and OpenVINO; to build the Detector from the
checkpoint (the cached IR read, compiled or its compiled blob loaded); and to run the first
frame. Then the real node, started as a process over DDS: seconds to its first output and
seconds from SIGINT to its exit (with its exit code). Medians of ``--runs``.

    .venv/bin/python bench/bench_startup.py [--weights W] [--size 1024x512] [--runs 3]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from anomseg_ros.paths import resolve_weights
from anomseg_ros.sizes import parse_size

PROBE = r'''
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import anomseg_ros.pipeline
from anomseg_ros.pipeline import Detector
t2 = time.perf_counter()
import openvino
t3 = time.perf_counter()
height, width = int(sys.argv[2]), int(sys.argv[3])
detector = Detector.from_checkpoint(sys.argv[1], input_size_hw=(height, width))
t4 = time.perf_counter()
import numpy as np
detector.predict(np.zeros((height, width, 3), np.uint8))
t5 = time.perf_counter()
print(json.dumps({'import torch': t1 - t0, 'import anomseg_ros': t2 - t1,
                  'import openvino': t3 - t2, 'Detector (cache read, compile)': t4 - t3,
                  'first frame': t5 - t4, 'total': t5 - t0, 'runtime': detector.runtime}))
'''


def probe(weights, size_hw) -> dict:
    done = subprocess.run([sys.executable, '-c', PROBE, weights, str(size_hw[0]),
                           str(size_hw[1])], capture_output=True, text=True, timeout=900)
    if done.returncode:
        sys.exit(f'the probe failed:\n{done.stderr[-3000:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def node_start_and_exit(weights, size_hw, namespace) -> tuple:
    """Seconds from starting the node's process to its first answer, and from SIGINT to its
    exit while frames stream; its exit code."""
    from anomseg_ros.ros.client import live_detector
    height, width = size_hw
    params = {'weights': weights, 'input_width': width, 'input_height': height}
    image = np.zeros((height, width, 3), np.uint8)
    started = time.perf_counter()
    with live_detector(namespace, params=params, outputs=('anomaly_score',),
                       timeout=600) as live:
        first = time.perf_counter() - started
        for stamp in range(100, 105):  # frames streaming when the signal comes
            live.client.publish_rgb(image, stamp)
            time.sleep(0.05)
        stopping = time.perf_counter()
        code = live.stop()
        return first, time.perf_counter() - stopping, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--weights', default='')
    parser.add_argument('--size', default='1024x512')
    parser.add_argument('--runs', type=int, default=3)
    args = parser.parse_args()
    weights = resolve_weights(args.weights)
    size_hw = parse_size(args.size)
    probe(weights, size_hw)  # warms the IR cache
    probes = [probe(weights, size_hw) for _ in range(args.runs)]
    nodes = [node_start_and_exit(weights, size_hw, f'/anomseg_startup_{i}')
             for i in range(args.runs)]
    print(f'{os.path.basename(weights)} at {args.size}, runtime {probes[0]["runtime"]}, warm '
          f'cache, {os.cpu_count()} CPUs; medians of {args.runs} fresh processes, s')
    print('| stage | seconds |')
    print('| --- | --- |')
    for key in probes[0]:
        if key != 'runtime':
            print(f'| {key} | {statistics.median(p[key] for p in probes):.2f} |')
    print(f'| node process to first output (over DDS) | '
          f'{statistics.median(n[0] for n in nodes):.2f} |')
    print(f'| SIGINT to exit while frames stream | {statistics.median(n[1] for n in nodes):.2f} '
          f'(exit codes {sorted({n[2] for n in nodes})}) |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
