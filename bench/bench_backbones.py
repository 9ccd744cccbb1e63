"""Speed and memory of every registered backbone (paper 001 Figures 3-4): parameters, median
forward time of a batch of one at each size, peak memory (CUDA max allocated on a GPU, peak RSS
of a fresh process on the CPU). Each backbone runs in its own process.

    python bench/bench_backbones.py [--sizes 512x256,1024x512] [--repeats 10] [--device auto]
"""
import argparse
import sys

from anomseg_ros.backbones import list_backbones
from anomseg_ros.evaluation.speed import measure_in_subprocess, parse_sizes, SIZES_HW


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backbones', default=','.join(list_backbones()))
    parser.add_argument('--sizes', type=parse_sizes, default=list(SIZES_HW),
                        help='WxH,WxH,... (default 512x256,1024x512)')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--device', default='auto')
    parser.add_argument('--num-classes', type=int, default=20)
    args = parser.parse_args(argv)
    sizes_hw = args.sizes
    names = [f'{w}x{h}' for h, w in sizes_hw]
    rows = [measure_in_subprocess(name, sizes_hw=sizes_hw, repeats=args.repeats,
                                  device=args.device, num_classes=args.num_classes)
            for name in args.backbones.split(',')]
    print(f'{rows[0]["device_name"]}; median of {args.repeats} forwards (batch 1, '
          f'{args.num_classes} classes); memory: {rows[0]["memory_kind"]}, MiB')
    print('| backbone | parameters | ' + ' | '.join(f'{n} ms | {n} MiB' for n in names) + ' |')
    print('| --- | --- |' + ' --- | --- |' * len(names))
    for row in rows:
        cells = [f'{row["sizes"][n]["median_ms"]:.1f} | {row["sizes"][n]["peak_memory_mib"]:.0f}'
                 for n in names]
        print(f'| {row["backbone"]} | {row["parameters"] / 1e6:.2f} M | ' + ' | '.join(cells)
              + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
