"""Whether the node's work after the network (scorer, labels, the five outputs rendered and
built into messages) pays to run on a second thread while the next frame's forward pass runs.

Frames per second of the same loop two ways, alternated ``--rounds`` times in one process:
sequential (the node's worker: forward, then the rest) and overlapped (the rest of frame i
on a second thread while frame i+1 is in the network, one frame in between at most). What the
overlap gains is the post-processing's time, less what it takes from the network's threads.

    .venv/bin/python bench/bench_overlap.py [--weights W] [--sizes 512x256,1024x512]
        [--frames 12] [--rounds 3]
"""
import argparse
import queue
import statistics
import threading
import time

import numpy as np
import torch

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detection, Detector
from anomseg_ros.ros.conversions import array_to_image_msg
from anomseg_ros.ros.outputs import IMAGE_OUTPUTS


def post_process(detector, image, logits, indices) -> None:
    """What the node does after the network: score, labels, mask, every output's message."""
    settings = detector.settings
    with torch.inference_mode():
        score = settings.scorer(logits)[0].numpy()
        labels = detector.semantic(logits, indices)[0].numpy()
    detection = Detection(labels=labels, score_map=score, mask=score >= settings.threshold,
                          settings=settings)
    for output in IMAGE_OUTPUTS:
        array_to_image_msg(output.render(image, detection), output.encoding)


def sequential(detector, image, frames: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(frames):  # _forward: the logits and the graph's labels, as the node
            post_process(detector, image, *detector._forward([image]))
    return frames / (time.perf_counter() - started)


def overlapped(detector, image, frames: int) -> float:
    handed = queue.Queue(maxsize=1)
    failures = []

    def consume():
        while (item := handed.get()) is not None:
            try:
                post_process(detector, image, *item)
            except Exception as exc:  # noqa: B902 - said below, not lost with the thread
                failures.append(exc)

    thread = threading.Thread(target=consume, name='post_process')
    thread.start()
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(frames):
            handed.put(detector._forward([image]))
    handed.put(None)
    thread.join()
    if failures:
        raise RuntimeError(f'post-processing failed: {failures[0]!r}')
    return frames / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', default='', help='checkpoint (default: the bundled one)')
    parser.add_argument('--sizes', default='512x256,1024x512', help='input sizes, WxH,...')
    parser.add_argument('--frames', type=int, default=12, help='frames per measurement')
    parser.add_argument('--rounds', type=int, default=3, help='measurements of each way')
    args = parser.parse_args()
    weights = resolve_weights(args.weights)
    rows = []
    for height, width in parse_sizes(args.sizes):
        detector = Detector.from_checkpoint(weights, input_size_hw=(height, width))
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
        sequential(detector, image, 2)  # warm-up, both ways
        overlapped(detector, image, 2)
        ways = {'sequential': [], 'overlapped': []}
        for _ in range(args.rounds):
            ways['sequential'].append(sequential(detector, image, args.frames))
            ways['overlapped'].append(overlapped(detector, image, args.frames))
        rows.append((width, height, ways))
    print(f'\n{detector.info.backbone} ({detector.info.source}), runtime {detector.runtime}, '
          f'{detector.precision_name}, {torch.get_num_threads()} CPU threads; frames per second, '
          f'median of {args.rounds} rounds of {args.frames} frames, alternated')
    print('| input | sequential (the node) | post-processing overlapped with the next forward |')
    print('| --- | --- | --- |')
    for width, height, ways in rows:
        print(f'| {width}x{height} | {statistics.median(ways["sequential"]):.2f} | '
              f'{statistics.median(ways["overlapped"]):.2f} |')


if __name__ == '__main__':
    main()
