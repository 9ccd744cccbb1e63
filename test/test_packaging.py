"""The package builds as a ROS user builds it, installs its data files, and lints like ament."""
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


@pytest.mark.slow
def test_colcon_build_installs_entry_points_and_share_files(tmp_path):
    colcon = os.path.join(BIN, 'colcon')
    if not os.path.exists(colcon):
        pytest.skip('colcon is not installed in this environment (make setup installs it)')
    src = tmp_path / 'ws' / 'src' / 'anomseg_ros'
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        '.venv', '.git', 'build', 'install', 'log', '*.egg-info', '__pycache__', 'demo_out'))
    ws = tmp_path / 'ws'
    env = {**os.environ, 'PATH': f'{BIN}:{os.environ["PATH"]}'}
    result = subprocess.run([colcon, 'build', '--event-handlers', 'console_direct-'],
                            cwd=ws, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    install = ws / 'install' / 'anomseg_ros'
    share = install / 'share' / 'anomseg_ros'
    for relative in ('package.xml', 'launch/detector.launch.py', 'config/detector.yaml',
                     'config/anomseg.rviz', 'config/fastdds_large_images.xml'):
        assert (share / relative).is_file(), relative
    assert (install / 'share' / 'ament_index' / 'resource_index' / 'packages' /
            'anomseg_ros').is_file()
    for executable in ('detector', 'anomseg'):  # where `ros2 run anomseg_ros ...` looks
        assert (install / 'lib' / 'anomseg_ros' / executable).is_file(), executable


def test_flake8_99_columns_as_ament():
    result = subprocess.run([sys.executable, '-m', 'flake8', 'anomseg_ros', 'rosbag_tools',
                             'launch', 'test', 'bench', 'setup.py'], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_xml_is_format_3_with_the_ros_dependencies():
    import xml.etree.ElementTree as ET
    root = ET.parse(os.path.join(REPO, 'package.xml')).getroot()
    assert root.get('format') == '3' and root.findtext('name') == 'anomseg_ros'
    depends = {e.text for e in root if e.tag.endswith('depend')}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs',
            'visualization_msgs'} <= depends
    assert root.find('export/build_type').text == 'ament_python'
