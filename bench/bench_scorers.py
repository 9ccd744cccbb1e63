"""The classic anomaly scorers at camera resolution: each on the whole frame at once, on blocks of
rows (what ``Scorer.__call__`` does on the CPU for those with ``by_rows``) and as the node calls
it (for msp and temperature: OpenCV, one channel plane at a time), each way's calls in a row
as in the node's loop, medians; then what each training-free refinement
(``scoring.refine``) adds to a score, on logits whose argmax has class regions and edges.

    .venv/bin/python bench/bench_scorers.py [--sizes 1024x512,2048x1024] [--repeats 15]
"""
import argparse
import functools
import os
import statistics
import sys
import time

import torch

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.scoring import create_scorer

CLASSIC = ('msp', 'temperature', 'maxlogit', 'maxentropy', 'energy', 'void')


def median_ms(function, logits, repeats, warm=2) -> float:
    times = []
    for index in range(warm + repeats):
        start = time.perf_counter()
        function(logits)
        if index >= warm:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='1024x512,2048x1024', help='WxH,...')
    parser.add_argument('--repeats', type=int, default=15)
    args = parser.parse_args(argv)
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    print(f'{os.cpu_count()} CPU threads; torch {torch.__version__}; 19 inlier logits and a void '
          f'one; median of {args.repeats} calls in a row each way')
    print('| scorer | input | whole frame ms | by rows ms | as called ms | speed-up |')
    print('| --- | --- | --- | --- | --- | --- |')
    for height, width in parse_sizes(args.sizes):
        logits = 4 * torch.randn(1, 20, height, width)
        for name in CLASSIC:
            scorer = create_scorer(name, num_inlier_classes=19,
                                   **({'void_channel': 19} if name == 'void' else {}))
            by_rows = functools.partial(scorer.pixelwise, scorer.score) if scorer.by_rows \
                else scorer.score
            with torch.inference_mode():
                whole, rows, called = (median_ms(run, logits, args.repeats)
                                       for run in (scorer.score, by_rows, scorer))
            print(f'| {name} | {width}x{height} | {whole:.1f} | {rows:.1f} | {called:.1f} | '
                  f'{whole / called:.2f} |', flush=True)
    from anomseg_ros.checkpoint import ModelInfo
    from anomseg_ros.pipeline import make_scorer
    from anomseg_ros.scoring.refine import REFINEMENTS
    print()
    print('| refinement | input | maxlogit ms | refined ms | added ms |')
    print('| --- | --- | --- | --- | --- |')
    for height, width in parse_sizes(args.sizes):
        logits = torch.randn(1, 20, height, width)
        for index, (top, left) in enumerate(((0, 0), (height // 3, 0), (0, width // 2),
                                             (height // 2, width // 3))):
            logits[:, index, top:, left:] += 8.0  # regions of four classes, with their edges
        plain = make_scorer('maxlogit', ModelInfo())
        with torch.inference_mode():
            base = median_ms(plain, logits, args.repeats)
            for refinement in REFINEMENTS:
                refined = median_ms(make_scorer(f'maxlogit+{refinement}', ModelInfo()), logits,
                                    args.repeats)
                print(f'| {refinement} | {width}x{height} | {base:.1f} | {refined:.1f} | '
                      f'{refined - base:.1f} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
