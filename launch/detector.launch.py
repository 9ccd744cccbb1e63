"""Start the anomseg detector node (and optionally RViz) on a camera topic.

    ros2 launch anomseg_ros detector.launch.py image:=/camera/image_raw scorer:=maxlogit

Parameters come from ``params_file``; the launch arguments ``weights``, ``scorer``,
``threshold``, ``device`` and ``precision`` override the file only when they are given.
"""
import os

from ament_index_python.packages import get_package_share_directory, PackageNotFoundError
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable, \
    Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _threshold(text):
    """The text "auto", or a number."""
    return 'auto' if text.strip().lower() == 'auto' else float(text)


def _flag(text):
    """true / false (1 / 0, yes / no)."""
    value = text.strip().lower()
    if value not in ('true', 'false', '1', '0', 'yes', 'no'):
        raise ValueError(text)
    return value in ('true', '1', 'yes')


def _cameras(text):
    """front,/left/image_raw (or the YAML list [front, /left/image_raw])."""
    entries = [e.strip().strip('\'"') for e in text.strip().strip('[]').split(',')]
    if not all(entries):
        raise ValueError(text)
    return entries


# launch argument -> type of the node parameter it overrides; '' (the default) = not given
OVERRIDES = {'weights': str, 'scorer': str, 'threshold': _threshold, 'device': str,
             'precision': str, 'runtime': str, 'publish_compressed': _flag,
             'cameras': _cameras}
KINDS = {_threshold: 'auto or a number', _flag: 'true or false',
         _cameras: 'a comma-separated list of camera names or image topics'}


def _launch_setup(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory('anomseg_ros')
    environment, actions = [], []
    if arg('rviz').lower() in ('true', '1', 'yes'):
        try:  # before anything starts: no detector is left running without its viewer
            get_package_share_directory('rviz2')
        except PackageNotFoundError:
            raise RuntimeError('rviz:=true but rviz2 is not installed (sudo apt install '
                               'ros-$ROS_DISTRO-rviz2), or launch without rviz:=true') from None
        from anomseg_ros.ros.rviz import write_rviz_config
        config = write_rviz_config(os.path.join(share, 'config', 'anomseg.rviz'),
                                   image=arg('image'), namespace=arg('namespace'))
        actions.append(Node(package='rviz2', executable='rviz2', name='anomseg_rviz',
                            arguments=['-d', config], on_exit=Shutdown()))
    if arg('dds_profile'):  # else the node keeps the user's exported profile, or its own
        environment.append(SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                                                  arg('dds_profile')))
    overrides = {}
    for name, kind in OVERRIDES.items():
        value = arg(name)
        if value == '':
            continue
        try:
            overrides[name] = kind(value)
        except ValueError:
            raise RuntimeError(f'launch argument {name}:={value!r} is not '
                               f'{KINDS.get(kind, kind.__name__)}') from None
    image = arg('image')
    managed = arg('managed').strip().lower() in ('true', '1', 'yes')
    detector = Node(
        package='anomseg_ros',
        executable='managed_detector' if managed else 'detector',
        name='anomseg_detector',
        namespace=arg('namespace'),
        parameters=[arg('params_file')] + ([overrides] if overrides else []),
        remappings=[('image', image), ('image/compressed', image + '/compressed')],
        output='screen',
        emulate_tty=True,
    )
    # the environment first: a Node takes its environment when it is executed
    return environment + [detector] + actions


def generate_launch_description():
    config = os.path.join(get_package_share_directory('anomseg_ros'), 'config')
    return LaunchDescription([
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='camera topic (sensor_msgs/Image) to segment; its '
                              'camera_info is read from beside it (/camera/camera_info)'),
        DeclareLaunchArgument('cameras', default_value='',
                              description='several cameras through one network instead of '
                              'image: names (front: front/image_raw) or image topics, comma-'
                              'separated (front,/left/image_raw); each camera\'s outputs go to '
                              '<namespace>/<camera>/...'),
        DeclareLaunchArgument('namespace', default_value='anomseg',
                              description='namespace of the node and its output topics'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(config, 'detector.yaml'),
                              description='YAML file with the node parameters'),
        DeclareLaunchArgument('weights', default_value='',
                              description='checkpoint path; overrides params_file when given'),
        DeclareLaunchArgument('scorer', default_value='',
                              description='msp, temperature, maxlogit, maxentropy, energy, sml, '
                              'void, pebal, sleeg, synboost, synboost_net (the learned ones and '
                              'sml need checkpoints made for them); overrides params_file when '
                              'given'),
        DeclareLaunchArgument('threshold', default_value='',
                              description='score at or above which a pixel is an obstacle, or '
                              'auto (the checkpoint\'s calibrated one); overrides params_file '
                              'when given'),
        DeclareLaunchArgument('device', default_value='',
                              description='auto (CUDA when available), cpu or cuda; overrides '
                              'params_file when given'),
        DeclareLaunchArgument('precision', default_value='',
                              description='auto, fp32, bf16 or fp16; overrides params_file '
                              'when given'),
        DeclareLaunchArgument('runtime', default_value='',
                              description='auto, torch or openvino; overrides params_file '
                              'when given'),
        DeclareLaunchArgument('publish_compressed', default_value='',
                              description='true or false: also publish <output>/compressed; '
                              'overrides params_file when given'),
        DeclareLaunchArgument('managed', default_value='false',
                              description='true: the managed (lifecycle) node, unconfigured '
                              'until a lifecycle manager configures and activates it'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz (rviz2) showing this namespace and '
                              'image; closing it ends the launch'),
        DeclareLaunchArgument('dds_profile', default_value='',
                              description='Fast DDS profile to use; "" = the one exported in '
                              'FASTDDS_DEFAULT_PROFILES_FILE, else the package\'s '
                              'config/fastdds_large_images.xml'),
        OpaqueFunction(function=_launch_setup),
    ])
