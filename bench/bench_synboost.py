"""What SynBoost costs per frame (paper 002 appendix A.3): the whole detector pipeline
(``Detector.predict``: preprocessing, forward, score, labels) of the segmentation model alone,
of SynBoost (segmentation, generator, features of the synthesis, dissimilarity network) and of
its light variant (generator and dissimilarity network at half width), at each size; median
milliseconds and the peak resident memory of a fresh process per variant.

    python bench/bench_synboost.py [--checkpoint models/erfnet_synthetic.pt]
        [--synboost runs/synboost/last.pt] [--sizes 512x256,1024x512] [--repeats 7]

Without ``--synboost``, SynBoost networks are built around ``--checkpoint`` with untrained
weights (the time does not depend on them).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

VARIANTS = {'segmentation': None, 'synboost': (32, 32), 'synboost light': (16, 16)}


def measure(checkpoint: str, variant: str, sizes, repeats: int, synboost: str = '') -> dict:
    """One variant in this process: ``{size: median ms}`` and the peak RSS."""
    import time
    import numpy as np
    from anomseg_ros.evaluation.speed import _peak_rss_mib, _reset_peak_rss
    from anomseg_ros.pipeline import Detector
    weights, scorer = checkpoint, 'msp'
    if VARIANTS[variant] is not None:
        weights, scorer = synboost or _untrained_synboost(checkpoint, *VARIANTS[variant]), \
            'synboost'
    result = {'sizes': {}}
    for height, width in sizes:
        detector = Detector.from_checkpoint(weights, scorer=scorer, device='cpu',
                                            input_size_hw=(height, width))
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
        _reset_peak_rss()
        for _ in range(2):
            detector.predict(image)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            detector.predict(image)
            times.append((time.perf_counter() - start) * 1000)
        result['sizes'][f'{width}x{height}'] = {'ms': float(np.median(times)),
                                                'peak_rss_mib': _peak_rss_mib()}
        result['precision'] = detector.precision_name
        result['parameters'] = sum(p.numel() for p in detector.model.parameters())
    return result


def _untrained_synboost(checkpoint: str, generator_channels: int, width: int) -> str:
    from anomseg_ros.checkpoint import load_model, save_checkpoint
    from anomseg_ros.methods import get_method
    from anomseg_ros.methods.synboost.method import SynboostOptions
    from anomseg_ros.training.config import AnomalyTrainConfig
    config = AnomalyTrainConfig(method='synboost', checkpoint=checkpoint, data='-', out='-')
    options = SynboostOptions(generator_channels=generator_channels, dissimilarity_width=width)
    model, info, _ = get_method('synboost').prepare(*load_model(checkpoint), config, options)
    path = os.path.join(tempfile.mkdtemp(), 'synboost.pt')
    save_checkpoint(path, model, info)
    return path


def main(argv=None) -> int:
    from anomseg_ros.evaluation.speed import parse_sizes
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default='models/erfnet_synthetic.pt')
    parser.add_argument('--synboost', default='', help='a trained SynBoost checkpoint')
    parser.add_argument('--sizes', type=parse_sizes, default=[(256, 512), (512, 1024)])
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--variant', default=None, help=argparse.SUPPRESS)  # child process
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.checkpoint, args.variant, args.sizes, args.repeats,
                                 args.synboost if args.variant == 'synboost' else '')))
        return 0
    sizes = ','.join(f'{w}x{h}' for h, w in args.sizes)
    rows = {}
    for variant in VARIANTS:
        out = subprocess.run([sys.executable, __file__, '--checkpoint', args.checkpoint,
                              '--synboost', args.synboost, '--sizes', sizes, '--repeats',
                              str(args.repeats), '--variant', variant],
                             capture_output=True, text=True, check=True)
        rows[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    names = [f'{w}x{h}' for h, w in args.sizes]
    base = rows['segmentation']['sizes']
    print(f'CPU, {rows["synboost"]["precision"]}, median of {args.repeats} Detector.predict '
          f'calls; peak RSS of a fresh process, MiB')
    print('| variant | parameters | ' + ' | '.join(f'{n} ms | x segmentation | {n} MiB'
                                                   for n in names) + ' |')
    print('| --- | --- |' + ' --- | --- | --- |' * len(names))
    for variant, row in rows.items():
        cells = [f'{row["sizes"][n]["ms"]:.1f} | {row["sizes"][n]["ms"] / base[n]["ms"]:.2f} | '
                 f'{row["sizes"][n]["peak_rss_mib"]:.0f}' for n in names]
        print(f'| {variant} | {row["parameters"] / 1e6:.2f} M | ' + ' | '.join(cells) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
