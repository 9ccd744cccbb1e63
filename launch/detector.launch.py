"""Start the anomseg detector node (and optionally RViz) on a camera topic.

    ros2 launch anomseg_ros detector.launch.py image:=/camera/image_raw scorer:=maxlogit
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    share = get_package_share_directory('anomseg_ros')
    config = os.path.join(share, 'config')
    return LaunchDescription([
        DeclareLaunchArgument('image', default_value='/camera/image_raw',
                              description='camera topic (sensor_msgs/Image) to segment'),
        DeclareLaunchArgument('namespace', default_value='anomseg',
                              description='namespace of the node and its output topics'),
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(config, 'detector.yaml'),
                              description='YAML file with the node parameters'),
        DeclareLaunchArgument('weights', default_value='',
                              description='checkpoint path; "" = the bundled default model'),
        DeclareLaunchArgument('scorer', default_value='msp',
                              description='msp, temperature, maxlogit, maxentropy, energy, void, '
                              'pebal, sleeg (the last two need checkpoints trained for them)'),
        DeclareLaunchArgument('threshold', default_value='0.5',
                              description='score at or above which a pixel is an obstacle'),
        DeclareLaunchArgument('device', default_value='auto',
                              description='auto (CUDA when available), cpu or cuda'),
        DeclareLaunchArgument('rviz', default_value='false',
                              description='also start RViz with config/anomseg.rviz'),
        DeclareLaunchArgument('dds_profile',
                              default_value=os.path.join(config, 'fastdds_large_images.xml'),
                              description='Fast DDS profile for camera-sized messages '
                                          '(default: large shared-memory segments)'),
        SetEnvironmentVariable('FASTDDS_DEFAULT_PROFILES_FILE',
                               LaunchConfiguration('dds_profile')),
        Node(
            package='anomseg_ros',
            executable='detector',
            name='anomseg_detector',
            namespace=LaunchConfiguration('namespace'),
            parameters=[LaunchConfiguration('params_file'), {
                'weights': ParameterValue(LaunchConfiguration('weights'), value_type=str),
                'scorer': ParameterValue(LaunchConfiguration('scorer'), value_type=str),
                'threshold': ParameterValue(LaunchConfiguration('threshold'), value_type=float),
                'device': ParameterValue(LaunchConfiguration('device'), value_type=str),
            }],
            remappings=[('image', LaunchConfiguration('image')),
                        ('image/compressed', [LaunchConfiguration('image'), '/compressed'])],
            output='screen',
            emulate_tty=True,
        ),
        Node(
            package='rviz2',
            executable='rviz2',
            name='anomseg_rviz',
            arguments=['-d', os.path.join(config, 'anomseg.rviz')],
            condition=IfCondition(LaunchConfiguration('rviz')),
        ),
    ])
