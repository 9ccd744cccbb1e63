"""A soak and a burst through the live node, with every frame accounted for.

Soak: a camera streams at ``--rate`` Hz for ``--seconds`` at ``--size`` with every output
subscribed. It prints the frames sent, answered (all five outputs back) and, by the node's own
counters, received, processed, dropped (the single slot keeps the newest frame) and lost before
the node (inside DDS); each /diagnostics level seen; and the node's resident memory at the
start and end of the stream (flat means nothing accumulates).

Burst: ``--burst`` frames sent as fast as the client can, then the same accounting: the node
never builds a backlog, and what it received is processed or dropped, nothing else.

    .venv/bin/python bench/bench_soak.py [--weights W] [--size 1024x512] [--rate 10]
        [--seconds 180] [--burst 2000]
"""
import argparse
import collections
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray

from anomseg_ros.evaluation.speed import parse_sizes
from anomseg_ros.ros.outputs import OUTPUTS


def rss_mb(pid: int) -> float:
    for line in open(f'/proc/{pid}/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def counters(client, timeout=5.0):
    """The node's newest /diagnostics counters after a fresh message."""
    deadline = time.monotonic() + timeout
    first = client.node_counters()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = client.node_counters()
        if now and now != first:
            return {k: int(v) for k, v in now.items() if k.startswith('frames_')}
    return {k: int(v) for k, v in client.node_counters().items() if k.startswith('frames_')}


def account(before, after, sent, answered, title):
    delta = {k.removeprefix('frames_'): after[k] - before.get(k, 0) for k in after}
    lost_in_dds = sent - delta['received']
    print(f'{title}: sent {sent}, answered {answered}; the node received {delta["received"]} '
          f'(lost inside DDS: {lost_in_dds}), processed {delta["processed"]}, dropped '
          f'{delta["dropped"]}, rejected {delta["rejected"]}, failed {delta["failed"]}, '
          f'skipped {delta["skipped"]}')
    unaccounted = delta['received'] - delta['processed'] - delta['dropped'] - \
        delta['rejected'] - delta['failed'] - delta['skipped']
    print(f'  every frame the node received is accounted for: '
          f'{"yes" if unaccounted == 0 else f"NO ({unaccounted} unaccounted)"}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--weights', default='', help='checkpoint (default: the bundled one)')
    parser.add_argument('--size', default='1024x512', help='camera and network size, WxH')
    parser.add_argument('--rate', type=float, default=10.0)
    parser.add_argument('--seconds', type=float, default=180.0)
    parser.add_argument('--burst', type=int, default=2000, help='0: no burst')
    args = parser.parse_args()
    from anomseg_ros.ros.client import live_detector
    (height, width), = parse_sizes(args.size)
    params = {'weights': args.weights, 'input_width': width, 'input_height': height,
              'diagnostics_period': 1.0}
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    levels = collections.Counter()
    with live_detector('/anomseg_soak', params=params, outputs=OUTPUTS, timeout=180) as live:
        client, pid = live.client, live.process.process.pid
        lock = threading.Lock()

        def on_diagnostics(msg):
            for status in msg.status:
                if status.name.startswith('/anomseg_soak/'):
                    with lock:
                        levels[(status.level[0], status.message.split(':')[0])] += 1
        client.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
        before, memory_start = counters(client), rss_mb(pid)
        answered = client.answered_frames()
        sent = int(args.rate * args.seconds)
        start = time.perf_counter()
        for i in range(sent):
            time.sleep(max(0.0, start + i / args.rate - time.perf_counter()))
            client.publish_rgb(image, 20_000_000_000 + i)
            if i % 50 == 0:
                client.forget_outputs()
        time.sleep(2.0)
        memory_end = rss_mb(pid)
        answered = client.answered_frames() - answered
        client.forget_outputs()
        after = counters(client)
        print(f'soak: {width}x{height} at {args.rate:g} Hz for {args.seconds:g} s, all outputs')
        account(before, after, sent, answered, 'soak')
        print(f'  node memory: {memory_start:.0f} MB at the start, {memory_end:.0f} MB at the '
              f'end of the stream')
        with lock:
            print('  /diagnostics ticks: ' + ', '.join(
                f'{n} x level {level} ({message})' for (level, message), n in levels.items()))
        if args.burst:
            before = counters(client)
            answered = client.answered_frames()
            for i in range(args.burst):
                client.publish_rgb(image, 40_000_000_000 + i)
            time.sleep(5.0)
            answered = client.answered_frames() - answered
            client.forget_outputs()
            account(before, counters(client), args.burst, answered, f'burst of {args.burst}')
    print(f'node exit code {live.stop()}')


if __name__ == '__main__':
    main()
