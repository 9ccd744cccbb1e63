"""The launch file, checked without ROS's launch package (not on PyPI): every argument has a
description, the node it starts exists as an entry point, and the files it names are installed.

``launch`` / ``launch_ros`` are replaced by recorders of what the file builds; on a full ROS
install, ``ros2 launch anomseg_ros detector.launch.py`` runs the same description.
"""
import importlib.util
import os
import sys
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_modules():
    names = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'SetEnvironmentVariable'],
        'launch.conditions': ['IfCondition'],
        'launch.substitutions': ['LaunchConfiguration'],
        'launch_ros.actions': ['Node'],
        'launch_ros.parameter_descriptions': ['ParameterValue'],
        'ament_index_python.packages': [],
    }
    modules = {}
    for module, classes in names.items():
        mod = types.ModuleType(module)
        for cls in classes:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        modules[module] = mod
    modules['launch_ros'] = types.ModuleType('launch_ros')
    modules['ament_index_python.packages'].get_package_share_directory = lambda name: REPO
    return modules


@pytest.fixture
def description(monkeypatch):
    for name, module in _fake_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(
        'detector_launch', os.path.join(REPO, 'launch', 'detector.launch.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def _actions(description, kind):
    return [a for a in description.args[0] if type(a).__name__ == kind]


def test_every_argument_is_described(description):
    arguments = _actions(description, 'DeclareLaunchArgument')
    names = {a.args[0] for a in arguments}
    assert {'image', 'namespace', 'params_file', 'weights', 'scorer', 'threshold',
            'rviz'} <= names
    for argument in arguments:
        assert argument.kwargs.get('description'), argument.args[0]
        assert 'default_value' in argument.kwargs, argument.args[0]


def test_the_node_is_our_entry_point_with_installed_files(description):
    detector, rviz = _actions(description, 'Node')
    assert detector.kwargs['package'] == 'anomseg_ros'
    setup_py = open(os.path.join(REPO, 'setup.py')).read()
    assert f"'{detector.kwargs['executable']} = anomseg_ros.ros.detector_node:main'" in setup_py
    assert detector.kwargs['name'] == 'anomseg_detector'
    source, target = detector.kwargs['remappings'][0]  # image -> the `image` argument
    assert source == 'image' and target.args[0] == 'image'
    defaults = {a.args[0]: a.kwargs['default_value']
                for a in _actions(description, 'DeclareLaunchArgument')}
    for name in ('params_file', 'dds_profile'):
        assert os.path.isfile(defaults[name]), defaults[name]
    assert os.path.isfile(rviz.kwargs['arguments'][1])
