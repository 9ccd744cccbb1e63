"""DDS settings for camera-sized messages.

Fast DDS's default shared-memory segment (512 KiB) is smaller than one camera frame; larger
samples fall back to fragmented UDP, where best-effort readers (the sensor-data QoS) lose them.
``config/fastdds_large_images.xml`` gives shared memory 128 MiB segments (messages up to
64 MiB). It is applied only when the user has not chosen a Fast DDS profile of their own.
"""
import os
from typing import Dict

from anomseg_ros.paths import share_dir

PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTRTPS_DEFAULT_PROFILES_FILE')


def large_image_profile() -> str:
    return os.path.join(share_dir(), 'config', 'fastdds_large_images.xml')


def dds_defaults(*, localhost_only: bool = False) -> Dict[str, str]:
    """Environment variables to add for this package's processes (none the user set)."""
    env = {}
    if not any(os.environ.get(v) for v in PROFILE_VARIABLES) and \
            os.environ.get('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp') == 'rmw_fastrtps_cpp' and \
            os.path.isfile(large_image_profile()):
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = large_image_profile()
    if localhost_only and 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in os.environ:
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    return env


def configure_dds(*, localhost_only: bool = False) -> Dict[str, str]:
    """Apply ``dds_defaults`` to this process; call before ``rclpy.init``."""
    env = dds_defaults(localhost_only=localhost_only)
    os.environ.update(env)
    return env
