"""``detector.launch.py`` under launch_testing, as a ROS package's launch tests run (``launch_test
FILE`` or pytest with launch_testing's plugin): the package built with colcon, the launch file
included with its arguments, a frame in and every output back, and every process of the
launch ending with exit code 0 when the launch shuts down (SIGINT).

launch_testing is a ROS package, not a PyPI wheel: ``make test`` builds it from the ROS sources
beside the checkout when they are there; without it this file is skipped, saying so."""
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

import pytest

NEEDED = ('launch', 'launch_ros', 'launch_testing', 'ros2launch', 'composition_interfaces')
MISSING = [name for name in NEEDED if importlib.util.find_spec(name) is None]
if MISSING:  # no module-level skip: under launch_testing's plugin it would end the collection
    def test_launch_testing_needs_the_ros_packages():
        pytest.skip(f'{", ".join(MISSING)} not installed: ROS packages, not PyPI wheels (make '
                    f'test builds them from the ROS sources beside the checkout when they are '
                    f'there)')
else:
    import launch
    import launch_testing
    import launch_testing.actions
    import launch_testing.asserts
    import numpy as np
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    BIN = os.path.dirname(sys.executable)
    NAMESPACE = '/anomseg_lt'
    CAMERA = '/anomseg_lt_cam/image_raw'

    def _install() -> str:
        """The package built and installed by colcon into a fresh folder, on the ament index."""
        root = tempfile.mkdtemp(prefix='anomseg_launch_testing_')
        subprocess.run([os.path.join(BIN, 'colcon'), 'build', '--base-paths', REPO,
                        '--packages-select', 'anomseg_ros', '--build-base', f'{root}/build',
                        '--install-base', f'{root}/install'], cwd=root, check=True,
                       capture_output=True, timeout=600,
                       env={**os.environ, 'PATH': f'{BIN}:{os.environ.get("PATH", "")}'})
        install = os.path.join(root, 'install', 'anomseg_ros')  # colcon's isolated layout
        os.environ['AMENT_PREFIX_PATH'] = os.pathsep.join(
            p for p in (install, os.environ.get('AMENT_PREFIX_PATH', '')) if p)
        return install

    @pytest.mark.launch_test
    @pytest.mark.ros
    @pytest.mark.slow
    def generate_test_description():
        from anomseg_ros.ros.dds import configure_dds
        configure_dds(localhost_only=True)  # the launched node inherits it
        install = _install()
        params = os.path.join(os.path.dirname(os.path.dirname(install)), 'params.yaml')
        with open(params, 'w') as stream:
            stream.write('/**:\n  ros__parameters:\n    weights: random\n    runtime: torch\n'
                         '    device: cpu\n    input_width: 64\n    input_height: 32\n')
        detector = IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(install, 'share', 'anomseg_ros', 'launch',
                                                       'detector.launch.py')),
            launch_arguments={'namespace': NAMESPACE.strip('/'), 'image': CAMERA,
                              'params_file': params}.items())
        return launch.LaunchDescription([detector, launch_testing.actions.ReadyToTest()]), {}

    class TheDetectorAnswers(unittest.TestCase):

        def test_a_frame_gets_every_output_with_its_header(self):
            import rclpy
            from anomseg_ros.ros.client import DetectorClient
            rclpy.init()
            client = DetectorClient(NAMESPACE, image_topic=CAMERA, name='anomseg_lt_client')
            try:
                client.wait_for_node(timeout=180)
                frame = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
                client.publish_rgb(frame, 9_000_000_001, frame_id='lt_camera')
                outputs = client.wait_outputs(9_000_000_001, timeout=60)
                self.assertIsNotNone(outputs, 'not every output came back')
                self.assertEqual({m.header.frame_id for m in outputs.values()}, {'lt_camera'})
                self.assertEqual(outputs['anomaly_score'].encoding, '32FC1')
            finally:
                client.close()
                rclpy.try_shutdown()

    @launch_testing.post_shutdown_test()
    class TheLaunchEndsCleanly(unittest.TestCase):

        def test_every_process_exits_with_code_0(self, proc_info):
            launch_testing.asserts.assertExitCodes(proc_info)
