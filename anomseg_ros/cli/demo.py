"""``anomseg demo``: start the real detector node, stream images to it over DDS, save what it
publishes. What ``make demo`` runs."""
import glob
import os
import time

import numpy as np

from anomseg_ros.data.demo_scenes import demo_scenes
from anomseg_ros.data.images import read_rgb, write_rgb
from anomseg_ros.paths import default_weights
from anomseg_ros.visualize import heatmap


def add_parser(verbs):
    parser = verbs.add_parser(
        'demo', help='run the live node on a few images over ROS 2 DDS',
        description='Starts the detector node as its own process, publishes each image on '
        '/anomseg_demo/image, waits for all five outputs and writes the overlay, score heat map '
        'and colour labels to --out.')
    parser.add_argument('--images', nargs='*', default=None, metavar='IMAGE',
                        help='image files or globs (default: generated road scenes)')
    parser.add_argument('--weights', default=None,
                        help='checkpoint (default: the bundled model, else random weights)')
    parser.add_argument('--scorer', default='msp')
    parser.add_argument('--threshold', type=float, default=0.5)
    parser.add_argument('--input-size', default='512x256', metavar='WxH',
                        help='network input size (default 512x256, quick on a CPU)')
    parser.add_argument('--out', default='demo_out', help='output folder (default demo_out)')
    parser.add_argument('--timeout', type=float, default=120.0,
                        help='seconds to wait for each frame')
    parser.set_defaults(run=run)


def _load_images(patterns):
    if not patterns:
        return [(f'scene_{i}', image) for i, image in enumerate(demo_scenes(4))]
    paths = sorted(p for pattern in patterns for p in (glob.glob(pattern) or [pattern]))
    return [(os.path.splitext(os.path.basename(p))[0], read_rgb(p)) for p in paths]


def run(args) -> int:
    import rclpy
    from anomseg_ros.ros.client import DetectorClient, NodeProcess
    from anomseg_ros.ros.dds import configure_dds
    from anomseg_ros.ros.conversions import image_msg_to_array

    weights = args.weights or default_weights()
    if weights is None:
        weights = 'random'
        print('WARNING: no trained weights are bundled yet (models/erfnet_synthetic.pt is '
              'missing): the node runs a RANDOMLY INITIALISED ERFNet, so its labels and anomaly '
              'scores are meaningless. Pass --weights PATH for real ones.')
    images = _load_images(args.images)
    width, height = (int(v) for v in args.input_size.lower().split('x'))
    os.makedirs(args.out, exist_ok=True)
    namespace = '/anomseg_demo'
    params = {'weights': weights, 'scorer': args.scorer, 'threshold': args.threshold,
              'input_width': width, 'input_height': height}
    log_path = os.path.join(args.out, 'node.log')
    print(f'starting the detector node ({weights}, scorer {args.scorer}, input {width}x{height}); '
          f'its log: {log_path}')
    configure_dds(localhost_only=True)
    rclpy.init()
    received, latencies = 0, []
    try:
        with NodeProcess(namespace=namespace, params=params, log_path=log_path) as node:
            client = DetectorClient(namespace)
            try:
                client.wait_for_node(timeout=args.timeout, process=node)
                for index, (name, image) in enumerate(images):
                    stamp_ns = (index + 1) * 100_000_000
                    start = time.monotonic()
                    client.publish_rgb(image, stamp_ns)
                    outputs = client.wait_outputs(stamp_ns, timeout=args.timeout)
                    if outputs is None:
                        print(f'{name}: no answer within {args.timeout:.0f} s')
                        continue
                    latencies.append(time.monotonic() - start)
                    received += 1
                    score = image_msg_to_array(outputs['anomaly_score'])[0]
                    mask = image_msg_to_array(outputs['obstacle_mask'])[0]
                    write_rgb(os.path.join(args.out, f'{name}_overlay.png'),
                              image_msg_to_array(outputs['overlay'])[0])
                    write_rgb(os.path.join(args.out, f'{name}_score.png'), heatmap(score))
                    write_rgb(os.path.join(args.out, f'{name}_semantic.png'),
                              image_msg_to_array(outputs['semantic_color'])[0])
                    print(f'{name}: {image.shape[1]}x{image.shape[0]}, all 5 outputs in '
                          f'{1000 * latencies[-1]:.0f} ms; score {score.min():.3f}..'
                          f'{score.max():.3f}, {100 * np.mean(mask > 0):.1f}% flagged')
            finally:
                client.close()
            exit_code = node.stop()
    finally:
        rclpy.try_shutdown()
    print(f'{received} of {len(images)} frames answered over DDS'
          + (f', median round trip {1000 * float(np.median(latencies)):.0f} ms' if latencies
             else '') + f'; node exited with code {exit_code}')
    print(f'overlays, score heat maps and labels are in {os.path.abspath(args.out)}')
    return 0 if received == len(images) else 1
