"""What DDS and rclpy cost around the network: the node path's round trip with no network in it.

A stand-in node (its own process, a Python worker thread like the detector's) answers each
camera frame with the detector's five image outputs, of their sizes and encodings, built the
way the detector builds them; the bench sends frames one at a time, as ``bench_node.py``
does, and times each phase on the machine's monotonic clock, which both processes share:

- publish: building and publishing the camera frame here;
- to the node: from then to the node's subscription callback (DDS, and the node's executor);
- to its worker: from the callback to the worker thread that takes the frame;
- publishing: the worker building and publishing the five outputs;
- to the subscriber: from the last publish to the last output's callback here (a Python
  subscriber's executor takes the five messages one at a time);
- round trip: from the frame's publish to all five outputs here.

    .venv/bin/python bench/bench_dds.py [--sizes 512x256,1024x512] [--frames 30]
"""
import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from anomseg_ros.evaluation.speed import parse_sizes

PHASES = ('publish', 'to the node', 'to its worker', 'publishing', 'to the subscriber',
          'round trip')


def stand_in_node(width: int, height: int) -> None:
    """The detector's receiving and publishing without the network: the frame's header on
    every output, and the node's times on a sixth, tiny message; ends with the bench."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from anomseg_ros.data.messages import ARRAY_ENCODINGS
    from anomseg_ros.ros.conversions import array_to_image_msg
    from anomseg_ros.ros.outputs import IMAGE_OUTPUTS
    rclpy.init()
    node = rclpy.create_node('anomseg_bench_dds_node')
    outputs = [(node.create_publisher(Image, f'out/{o.name}', qos_profile_sensor_data),
                o.encoding) for o in IMAGE_OUTPUTS]
    arrays = {encoding: np.zeros((height, width) + ((channels,) if channels > 1 else ()), dtype)
              for encoding, (dtype, channels) in ARRAY_ENCODINGS.items()}
    slot, cond = [], threading.Condition()

    def on_frame(msg):
        msg.header.frame_id = f'{time.monotonic():.6f}'
        with cond:
            slot[:] = [msg]
            cond.notify()

    def work():
        while True:
            with cond:
                cond.wait_for(lambda: slot)
                msg = slot.pop()
            header = msg.header
            header.frame_id += f' {time.monotonic():.6f}'
            messages = [array_to_image_msg(arrays[encoding], encoding, header)
                        for _, encoding in outputs]
            for (publisher, _), message in zip(outputs, messages):
                publisher.publish(message)
            header.frame_id += f' {time.monotonic():.6f}'
            done.publish(Image(header=header))

    node.create_subscription(Image, 'image', on_frame, qos_profile_sensor_data)
    done = node.create_publisher(Image, 'out/done', 10)
    threading.Thread(target=work, daemon=True).start()
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    bench = os.getppid()
    while os.getppid() == bench:  # a bench that was killed leaves no node spinning
        executor.spin_once(timeout_sec=0.1)


def bench_size(width: int, height: int, frames: int) -> dict:
    """Each phase's median in ms over ``frames`` frames sent one at a time."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from anomseg_ros.ros.conversions import array_to_image_msg
    from anomseg_ros.ros.outputs import OUTPUTS
    node_process = subprocess.Popen([sys.executable, __file__, '--node', f'{width}x{height}'],
                                    env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node('anomseg_bench_dds')
    camera = node.create_publisher(Image, 'image', qos_profile_sensor_data)
    arrivals, node_times, cond = {}, {}, threading.Condition()

    def on_output(msg):
        with cond:
            arrivals.setdefault(msg.header.stamp.sec, []).append(time.monotonic())
            cond.notify_all()

    def on_done(msg):
        with cond:
            node_times[msg.header.stamp.sec] = [float(v) for v in msg.header.frame_id.split()]
            cond.notify_all()

    for name in OUTPUTS:
        node.create_subscription(Image, f'out/{name}', on_output, qos_profile_sensor_data)
    node.create_subscription(Image, 'out/done', on_done, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
    threading.Thread(target=spin, daemon=True).start()
    image = np.zeros((height, width, 3), np.uint8)
    rows = []
    try:
        deadline = time.monotonic() + 60
        while camera.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        for index in range(1, frames + 4):
            time.sleep(0.1)
            start = time.monotonic()
            msg = array_to_image_msg(image, 'rgb8')
            msg.header.stamp.sec = index
            camera.publish(msg)
            published = time.monotonic()
            with cond:
                answered = cond.wait_for(lambda: len(arrivals.get(index, ())) == len(OUTPUTS)
                                         and index in node_times, timeout=5)
            if not answered or index <= 3:  # the first frames match DDS's ends
                continue
            received, taken, sent = node_times[index]
            last = max(arrivals[index])
            rows.append((published - start, received - published, taken - received,
                         sent - taken, last - sent, last - start))
    finally:
        node_process.kill()
        node_process.wait()
        executor.shutdown()
        rclpy.try_shutdown()
    if not rows:
        raise RuntimeError(f'no frame came back at {width}x{height}')
    return {phase: 1e3 * statistics.median(column) for phase, column in zip(PHASES, zip(*rows))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='512x256,1024x512', help='WxH,...')
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--node', default='', help=argparse.SUPPRESS)
    args = parser.parse_args()
    from anomseg_ros.ros.dds import configure_dds
    configure_dds(localhost_only=True)
    if args.node:
        (height, width), = parse_sizes(args.node)
        stand_in_node(width, height)
        return 0
    results = []
    for height, width in parse_sizes(args.sizes):
        results.append((width, height, bench_size(width, height, args.frames)))
    print(f'a camera frame in, the five outputs out, no network; medians of {args.frames} '
          f'frames, ms')
    print('| input | ' + ' | '.join(PHASES) + ' |')
    print('| --- |' + ' --- |' * len(PHASES))
    for width, height, phases in results:
        print(f'| {width}x{height} | ' + ' | '.join(f'{phases[p]:.1f}' for p in PHASES) + ' |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
