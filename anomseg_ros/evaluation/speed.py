"""Speed and memory of a backbone: parameters, median forward time, peak memory (the measure
paper 001 Figures 3-4 plot).

Peak memory is CUDA's max allocated on a GPU, and the process's peak resident set during the
forward passes of each size on the CPU (reset before each size where Linux allows); the CPU
figure is process-wide, so each backbone is measured in a fresh process
(``measure_in_subprocess``) and reported with the RSS the process had before building it.
"""
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Sequence, Tuple

import torch

from anomseg_ros.backbones import create_backbone
from anomseg_ros.checkpoint import count_parameters
from anomseg_ros.sizes import parse_size
from anomseg_ros.errors import AnomsegError
from anomseg_ros.pipeline import resolve_device

SIZES_HW = ((256, 512), (512, 1024))


def parse_sizes(text: str) -> List[Tuple[int, int]]:
    """``"512x256,1024x512"`` as ``[(256, 512), (512, 1024)]`` (height, width)."""
    return [parse_size(s.strip()) for s in text.split(',') if s.strip()]


def _peak_rss_mib() -> float:
    """The process's peak resident set (VmHWM) since the last ``_reset_peak_rss``."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _reset_peak_rss() -> bool:
    """Start the peak resident set afresh (Linux: ``5`` to ``/proc/self/clear_refs``), so the
    peak of each input size is its own and not the imports'."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


@torch.inference_mode()
def measure_backbone(name: str, *, num_classes: int = 20, sizes_hw: Sequence[Tuple[int, int]]
                     = SIZES_HW, device: str = 'auto', repeats: int = 10,
                     warmup: int = 2) -> Dict[str, object]:
    """Parameters, and per input size the median forward time (ms) of a batch of one and the
    peak memory (MiB), of an untrained ``name`` (weights do not change the cost)."""
    device = resolve_device(device)
    baseline = _peak_rss_mib()
    torch.manual_seed(0)
    model = create_backbone(name, num_classes=num_classes).eval().to(device)
    model_rss = _peak_rss_mib()
    result = {'backbone': name, 'parameters': count_parameters(model), 'device': str(device),
              'device_name': torch.cuda.get_device_name(device) if device.type == 'cuda'
              else f'CPU, {torch.get_num_threads()} threads',
              'baseline_rss_mib': baseline, 'model_rss_mib': model_rss, 'sizes': {}}
    for height, width in sizes_hw:
        x = torch.rand(1, 3, height, width, device=device)
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
        else:
            _reset_peak_rss()
        times = []
        for i in range(warmup + repeats):
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            model(x)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - start))
        memory = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == 'cuda'
                  else _peak_rss_mib())
        result['sizes'][f'{width}x{height}'] = {'median_ms': statistics.median(times),
                                                'peak_memory_mib': memory}
    result['memory_kind'] = ('CUDA max allocated' if device.type == 'cuda' else
                             'peak RSS of the process during the forward passes')
    return result


def measure_in_subprocess(name: str, **kwargs) -> Dict[str, object]:
    """``measure_backbone`` in a fresh Python process, so peak RSS is this backbone's alone."""
    spec = {'name': name, 'repeats': kwargs.get('repeats', 10),
            'device': kwargs.get('device', 'auto'), 'num_classes': kwargs.get('num_classes', 20),
            'sizes_hw': [list(size) for size in kwargs.get('sizes_hw', SIZES_HW)]}
    argv = [sys.executable, '-m', 'anomseg_ros.evaluation.speed', json.dumps(spec)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise AnomsegError(f'measuring {name} failed: {done.stderr.strip()[-500:]}')
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    """The child of ``measure_in_subprocess``: one JSON argument of ``measure_backbone``'s
    keywords and the backbone's ``name``; prints the result as JSON."""
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])
    spec['sizes_hw'] = [tuple(size) for size in spec['sizes_hw']]
    print(json.dumps(measure_backbone(spec.pop('name'), **spec)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
