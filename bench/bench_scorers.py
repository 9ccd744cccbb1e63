"""The classic anomaly scorers at camera resolution: each on the whole frame at once and on blocks
of rows (what ``Scorer.__call__`` does on the CPU for those with ``by_rows``), each way's calls
in a row as in the node's loop, medians.

    .venv/bin/python bench/bench_scorers.py [--sizes 1024x512,2048x1024] [--repeats 15]
"""
import argparse
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
    print('| scorer | input | whole frame ms | by rows ms | speed-up |')
    print('| --- | --- | --- | --- | --- |')
    for height, width in parse_sizes(args.sizes):
        logits = 4 * torch.randn(1, 20, height, width)
        for name in CLASSIC:
            scorer = create_scorer(name, num_inlier_classes=19,
                                   **({'void_channel': 19} if name == 'void' else {}))
            with torch.inference_mode():
                whole, rows = (median_ms(run, logits, args.repeats)
                               for run in (scorer.score, scorer))
            print(f'| {name} | {width}x{height} | {whole:.1f} | {rows:.1f} | '
                  f'{whole / rows:.2f} |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
