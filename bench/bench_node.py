"""Median per-frame time of the bare network forward and of the whole node path, in one run.

The node path is: publish a camera frame over DDS -> the detector node (its own process)
decodes, runs the pipeline and publishes -> the score image is received here. The node's
input size is set to the frame size, so both columns run the network at the same resolution.
Latency is one frame at a time (the next is sent when the last came back), each frame after
one bare forward pass here, so that both medians see the machine in the same state (on a
shared cloud CPU the forward's speed drifts by 10-20% within minutes), with a pause of
``SETTLE_S`` before each; throughput is a camera streaming at ``--stream-rate`` Hz for
``--stream-seconds``, counting the frames whose five outputs all came back per second (the
node works on the newest frame and drops the others, as on a vehicle). Everything else is
the node's defaults: the bundled model, ``runtime`` and ``precision`` auto.

    .venv/bin/python bench/bench_node.py [--weights W] [--device cpu|cuda] [--frames N]
        [--runtime auto|torch|openvino] [--precision auto|int8|...] [--calibration DIR|BAG]
        [--sizes 512x256,1024x512] [--stream-rate HZ]

``--cameras 1,2,4`` measures instead several cameras streaming at ``--stream-rate`` each at
the first ``--sizes``: N cameras in one node (``cameras: [cam0, ...]``, one batched forward
pass) against N single-camera nodes, each camera's answered frames per second, in one run.
The cameras publish together (a synchronised rig).

With ``--precision int8`` the checkpoint is quantized once per size on ``--calibration``
(cached; the node then reads the cache), under the default accuracy control.
"""
import argparse
import contextlib
import os
import statistics
import time

import numpy as np
import torch

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.paths import resolve_weights
from anomseg_ros.pipeline import Detector, resolve_device
from anomseg_ros.precision import autocast, PRECISIONS, to_fast_layout
from anomseg_ros.runtimes import runtime_choices


# a pause before each timed part: the runtime's worker threads spin for a while after a forward
# pass, and would take the cores from the other process's next one
SETTLE_S = 0.1


def bare_forward(detector, device, size_wh):
    """A function that times one forward pass of the network alone (seconds), in the
    precision and layout the node uses, on a frame of the node's size."""
    image = np.random.default_rng(0).integers(0, 256, (size_wh[1], size_wh[0], 3),
                                              dtype=np.uint8)
    batch = detector.preprocess([image])
    if detector.channels_last:
        batch = to_fast_layout(batch)

    def timed() -> float:
        with torch.inference_mode(), autocast(device, detector.dtype):
            start = time.perf_counter()
            detector.model(batch)
            if device.type == 'cuda':
                torch.cuda.synchronize()
            return time.perf_counter() - start
    return timed


def bench_stream(client, image, rate_hz: float, seconds: float) -> float:
    """Frames answered per second while a camera publishes at ``rate_hz``."""
    answered = client.answered_frames()
    start = time.perf_counter()
    for i in range(int(rate_hz * seconds)):
        time.sleep(max(0.0, start + i / rate_hz - time.perf_counter()))
        client.publish_rgb(image, 20_000_000_000 + i)
    time.sleep(2.0)  # the last frames' outputs
    client.forget_outputs()
    return (client.answered_frames() - answered) / seconds


def bench_node(weights, device, size_wh, frames, outputs, runtime, forward, stream=None,
               precision='auto', calibration=''):
    """Median round trip in seconds, the median of ``forward()`` (the bare network, timed
    before each frame: both medians see the machine in the same state), the throughput with
    ``stream`` (rate Hz, seconds), and the node's stage medians."""
    from anomseg_ros.ros.client import live_detector
    from anomseg_ros.ros.outputs import OUTPUTS
    width, height = size_wh
    params = {'weights': weights, 'device': device.type, 'input_width': width,
              'input_height': height, 'runtime': runtime, 'precision': precision,
              'calibration': calibration}
    params.update({f'publish.{name}': name in outputs for name in OUTPUTS})
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    times, forwards = [], []
    import tempfile
    log_path = os.path.join(tempfile.gettempdir(), f'anomseg_bench_node_{width}x{height}.log')
    with live_detector(f'/anomseg_bench_{width}', params=params, outputs=outputs,
                       log_path=log_path,
                       timeout=120) as live:
        for i in range(frames + 2):
            stamp_ns = 10_000_000_000 + i
            time.sleep(SETTLE_S)
            forwards.append(forward())
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            live.client.publish_rgb(image, stamp_ns)
            if live.client.wait_outputs(stamp_ns, timeout=60) is None:
                raise RuntimeError(f'frame {i} at {width}x{height} got no answer')
            if i >= 2:
                times.append(time.perf_counter() - start)
        counters = fresh_counters(live.client)  # stages of the frames timed one at a time
        rate = bench_stream(live.client, image, *stream) if stream else float('nan')
        streamed = fresh_counters(live.client) if stream else {}
    print(f'{width}x{height}, outputs {", ".join(outputs)}: the node ran '
          f'{counters.get("runtime", "?")} in {counters.get("precision", "?")}')
    return (statistics.median(times), statistics.median(forwards[2:]), rate,
            stages_of(counters), stages_of(streamed))


def fresh_counters(client) -> dict:
    """The node's /diagnostics values from a message sent after the frames so far (one period
    of the node's default ``diagnostics_period``, 1 s, and a margin)."""
    time.sleep(1.5)
    return client.node_counters()


def stages_of(counters: dict) -> dict:
    return {key[len('stage_ms_'):]: value for key, value in counters.items()
            if key.startswith('stage_ms_')}


@contextlib.contextmanager
def camera_clients(groups, params, outputs, log_dir):
    """Detector nodes, one per entry of ``groups`` (the ``cameras`` of each; [] for a plain
    single-camera node), and one client per camera, each answered once."""
    import rclpy
    from anomseg_ros.ros.camera import parse_cameras
    from anomseg_ros.ros.client import DetectorClient, NodeProcess
    from anomseg_ros.ros.dds import configure_dds
    configure_dds(localhost_only=True)
    rclpy.init()
    try:
        with contextlib.ExitStack() as stack:
            waits = []
            for group, cameras in enumerate(groups):
                namespace = f'/anomseg_bench_cameras{group}'
                process = stack.enter_context(NodeProcess(
                    namespace=namespace, params={**params, **({'cameras': cameras}
                                                              if cameras else {})},
                    log_path=os.path.join(log_dir, f'anomseg_bench_cameras{group}.log')))
                for name, topic in parse_cameras(cameras):
                    prefix = f'{name}/' if name else ''
                    client = DetectorClient(namespace, outputs=[prefix + o for o in outputs],
                                            image_topic=topic, name=f'bench_{group}_{name}')
                    stack.callback(client.close)
                    waits.append((client, process))
            for client, process in waits:
                client.wait_for_node(timeout=180, process=process)
            yield [client for client, _ in waits]
    finally:
        rclpy.try_shutdown()


def bench_cameras(weights, device, size_wh, count, runtime, rate_hz, seconds, *, one_node,
                  precision='auto', calibration=''):
    """Each camera's answered frames per second while ``count`` cameras publish at
    ``rate_hz``: all in one node (``one_node``) or each in its own node."""
    import tempfile
    from anomseg_ros.ros.outputs import OUTPUTS
    width, height = size_wh
    params = {'weights': weights, 'device': device.type, 'input_width': width,
              'input_height': height, 'runtime': runtime, 'precision': precision,
              'calibration': calibration}
    names = [f'cam{i}' for i in range(count)]
    groups = [names] if one_node else [[] for _ in names]
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    with camera_clients(groups, params, OUTPUTS, tempfile.gettempdir()) as clients:
        answered = [client.answered_frames() for client in clients]
        start = time.perf_counter()
        for i in range(int(rate_hz * seconds)):
            time.sleep(max(0.0, start + i / rate_hz - time.perf_counter()))
            for client in clients:
                client.publish_rgb(image, 20_000_000_000 + i)
        time.sleep(2.0)  # the last frames' outputs
        return [(client.answered_frames() - before) / seconds
                for client, before in zip(clients, answered)]


def main_cameras(args, device):
    (height, width), = parse_sizes(args.sizes)[:1]
    counts = [int(c) for c in args.cameras.split(',')]
    node = dict(precision=args.precision, calibration=args.calibration)
    rows = []
    for count in counts:
        one = bench_cameras(args.weights, device, (width, height), count, args.runtime,
                            args.stream_rate, args.stream_seconds, one_node=True, **node)
        apart = bench_cameras(args.weights, device, (width, height), count, args.runtime,
                              args.stream_rate, args.stream_seconds, one_node=False, **node)
        rows.append((count, one, apart))
    print(f'\n{os.path.basename(args.weights)} at {width}x{height}, every camera at '
          f'{args.stream_rate:g} Hz for {args.stream_seconds:g} s, all outputs; each camera\'s '
          f'answered frames per second (slowest camera / mean)')
    print('| cameras | one node, one batched forward pass | one node per camera |')
    print('| --- | --- | --- |')
    for count, one, apart in rows:
        print(f'| {count} | {min(one):.1f} / {statistics.mean(one):.1f} FPS | '
              f'{min(apart):.1f} / {statistics.mean(apart):.1f} FPS |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', default='', help='checkpoint (default: the bundled one)')
    parser.add_argument('--device', default='auto', choices=('auto', 'cpu', 'cuda'))
    parser.add_argument('--frames', type=int, default=15, help='timed frames per cell')
    parser.add_argument('--runtime', default='auto', choices=runtime_choices())
    parser.add_argument('--precision', default='auto', choices=PRECISIONS)
    parser.add_argument('--calibration', default='', help='precision int8: frames to quantize '
                        'on (default: synthetic scenes, for the bundled model)')
    parser.add_argument('--sizes', default='512x256,1024x512', help='input sizes, WxH,...')
    parser.add_argument('--stream-rate', type=float, default=10.0,
                        help='camera rate in Hz for the throughput column (0: no column)')
    parser.add_argument('--stream-seconds', type=float, default=10.0)
    parser.add_argument('--cameras', default='', metavar='N[,N...]',
                        help='several cameras instead: N in one node against N nodes')
    args = parser.parse_args()
    args.weights = resolve_weights(args.weights)
    if args.cameras:
        return main_cameras(args, resolve_device(args.device))

    from anomseg_ros.ros.outputs import OUTPUTS
    device = resolve_device(args.device)
    stream = (args.stream_rate, args.stream_seconds) if args.stream_rate > 0 else None
    rows = []
    for height, width in parse_sizes(args.sizes):
        size_wh = (width, height)
        detector = Detector.from_checkpoint(args.weights, device=str(device),
                                            runtime=args.runtime, precision=args.precision,
                                            calibration=args.calibration,
                                            input_size_hw=(height, width))
        forward = bare_forward(detector, device, size_wh)
        node = dict(precision=args.precision, calibration=args.calibration)
        score_only, forward_a, _, _, _ = bench_node(args.weights, device, size_wh, args.frames,
                                                    ('anomaly_score',), args.runtime, forward,
                                                    **node)
        all_outputs, forward_b, rate, one_by_one, streamed = bench_node(
            args.weights, device, size_wh, args.frames, OUTPUTS, args.runtime, forward, stream,
            **node)
        rows.append((size_wh, (forward_a, forward_b), score_only, all_outputs, rate,
                     one_by_one, streamed))

    info = detector.info
    print(f'\n{info.backbone} ({info.source}) on {device}, runtime {detector.runtime} '
          f'({detector.runtime_reason}), {detector.precision_name} ({torch.get_num_threads()} '
          f'CPU threads); latency: median of {args.frames} frames, ms, each frame after a '
          f'bare forward pass in this process (bare forward: of the score-only / all-outputs '
          f'frames; each ratio is to its own)' +
          (f'; throughput: camera at {args.stream_rate:g} Hz for {args.stream_seconds:g} s'
           if stream else ''))
    print(f'| input | bare forward | node latency, score only | ratio | node latency, all '
          f'{len(OUTPUTS)} outputs | ratio | node throughput, all {len(OUTPUTS)} outputs |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for (w, h), (forward_a, forward_b), score_only, all_outputs, rate, *_ in rows:
        throughput = f'{rate:.1f} FPS' if stream else '-'
        print(f'| {w}x{h} | {1000 * forward_a:.1f} / {1000 * forward_b:.1f} | '
              f'{1000 * score_only:.1f} | {score_only / forward_a:.2f} | '
              f'{1000 * all_outputs:.1f} | {all_outputs / forward_b:.2f} | {throughput} |')
    print('\nthe node path per stage, all outputs subscribed (the node\'s own /diagnostics, '
          'medians, ms; wait = in the slot, forward = preprocessing and network, score = scorer '
          'and labels, outputs = rendering, messages and publishing; "one at a time" = the '
          'frames of the latency column, "streaming" = the node\'s last 100 frames after the '
          'throughput column\'s stream)')
    names = list(rows[0][5] or rows[0][6]) if rows else []
    print('| input | frames | ' + ' | '.join(names) + ' |')
    print('| --- | --- |' + ' --- |' * len(names))
    for (w, h), *_, one_by_one, streamed in rows:
        for label, stages in (('one at a time', one_by_one), ('streaming', streamed)):
            if stages:
                print(f'| {w}x{h} | {label} | ' +
                      ' | '.join(stages.get(n, '-') for n in names) + ' |')


if __name__ == '__main__':
    main()
