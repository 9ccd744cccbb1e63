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


class FakeLaunchConfiguration(Recorded):
    def perform(self, context):
        return context[self.args[0]]


class PackageNotFoundError(KeyError):
    pass


def _share(installed):
    def get_package_share_directory(name):
        if name == 'anomseg_ros':
            return REPO
        if name in installed:
            return f'/opt/ros/kilted/share/{name}'
        raise PackageNotFoundError(name)
    return get_package_share_directory


def _fake_modules(installed=('rviz2',)):
    names = {
        'launch': ['LaunchDescription'],
        'launch.actions': ['DeclareLaunchArgument', 'OpaqueFunction', 'SetEnvironmentVariable',
                           'Shutdown'],
        'launch.substitutions': [],
        'launch_ros.actions': ['Node'],
        'ament_index_python.packages': [],
    }
    modules = {}
    for module, classes in names.items():
        mod = types.ModuleType(module)
        for cls in classes:
            setattr(mod, cls, type(cls, (Recorded,), {}))
        modules[module] = mod
    modules['launch_ros'] = types.ModuleType('launch_ros')
    modules['launch.substitutions'].LaunchConfiguration = FakeLaunchConfiguration
    packages = modules['ament_index_python.packages']
    packages.get_package_share_directory = _share(installed)
    packages.PackageNotFoundError = PackageNotFoundError
    return modules


def _load(monkeypatch, installed=('rviz2',)):
    for name, module in _fake_modules(installed).items():
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location(
        'detector_launch', os.path.join(REPO, 'launch', 'detector.launch.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


@pytest.fixture
def description(monkeypatch):
    return _load(monkeypatch)


def _actions(description, kind):
    return [a for a in description.args[0] if type(a).__name__ == kind]


def _run(description, **given):
    """The actions the launch starts with these ``name:=value`` arguments, as ros2 launch
    resolves them (declared defaults for the rest)."""
    context = {a.args[0]: a.kwargs['default_value']
               for a in _actions(description, 'DeclareLaunchArgument')}
    unknown = set(given) - set(context)
    assert not unknown, unknown
    context.update({k: str(v) for k, v in given.items()})
    (opaque,) = _actions(description, 'OpaqueFunction')
    return opaque.kwargs['function'](context)


def _node(actions, package):
    return next(a for a in actions if type(a).__name__ == 'Node' and
                a.kwargs['package'] == package)


def test_every_argument_is_described(description):
    arguments = _actions(description, 'DeclareLaunchArgument')
    names = {a.args[0] for a in arguments}
    assert {'image', 'namespace', 'params_file', 'weights', 'scorer', 'threshold',
            'rviz', 'precision'} <= names
    for argument in arguments:
        assert argument.kwargs.get('description'), argument.args[0]
        assert 'default_value' in argument.kwargs, argument.args[0]


def test_the_node_is_our_entry_point_with_installed_files(description):
    detector = _node(_run(description), 'anomseg_ros')
    setup_py = open(os.path.join(REPO, 'setup.py')).read()
    assert f"'{detector.kwargs['executable']} = anomseg_ros.detector:main'" in setup_py
    assert detector.kwargs['name'] == 'anomseg_detector'
    assert detector.kwargs['remappings'][0] == ('image', '/camera/image_raw')
    assert detector.kwargs['remappings'][1] == ('image/compressed',
                                                '/camera/image_raw/compressed')
    params_file = detector.kwargs['parameters'][0]
    assert os.path.isfile(params_file), params_file


def test_the_params_file_is_not_overridden_by_arguments_not_given(description):
    detector = _node(_run(description), 'anomseg_ros')
    assert len(detector.kwargs['parameters']) == 1  # the file alone: its values hold
    detector = _node(_run(description, scorer='maxlogit', threshold='-5'), 'anomseg_ros')
    params_file, overrides = detector.kwargs['parameters']
    assert overrides == {'scorer': 'maxlogit', 'threshold': -5.0}
    detector = _node(_run(description, threshold='auto'), 'anomseg_ros')
    assert detector.kwargs['parameters'][1] == {'threshold': 'auto'}


def test_cameras_is_a_list_of_names_or_topics(description):
    detector = _node(_run(description, cameras='front, /left/image_raw'), 'anomseg_ros')
    assert detector.kwargs['parameters'][1] == {'cameras': ['front', '/left/image_raw']}
    detector = _node(_run(description, cameras='[front, rear]'), 'anomseg_ros')
    assert detector.kwargs['parameters'][1] == {'cameras': ['front', 'rear']}
    with pytest.raises(RuntimeError, match='cameras'):
        _run(description, cameras='front,,rear')


def test_a_bad_argument_is_refused_with_its_name(description):
    with pytest.raises(RuntimeError, match='threshold'):
        _run(description, threshold='high')


def test_the_users_dds_profile_is_kept_unless_one_is_given(description):
    assert not [a for a in _run(description) if type(a).__name__ == 'SetEnvironmentVariable']
    (env,) = [a for a in _run(description, dds_profile='/mine.xml')
              if type(a).__name__ == 'SetEnvironmentVariable']
    assert env.args == ('FASTDDS_DEFAULT_PROFILES_FILE', '/mine.xml')


def test_rviz_follows_the_namespace_and_image_and_ends_the_launch(description):
    actions = _run(description, rviz='true', namespace='front', image='/cam_front/image_raw')
    rviz = _node(actions, 'rviz2')
    assert type(rviz.kwargs['on_exit']).__name__ == 'Shutdown'
    text = open(rviz.kwargs['arguments'][1]).read()
    assert 'Value: /cam_front/image_raw' in text and 'Value: /front/overlay' in text
    assert '/anomseg/' not in text and '/camera/image_raw' not in text.split('Panels:')[1]


def test_rviz_without_rviz2_refuses_before_starting_anything(monkeypatch):
    description = _load(monkeypatch, installed=())
    with pytest.raises(RuntimeError, match='rviz2 is not installed'):
        _run(description, rviz='true')
    assert _node(_run(description), 'anomseg_ros')  # without rviz it starts


def test_package_xml_does_not_pull_a_gui_onto_headless_vehicles():
    """rviz2 is optional: rviz:=true without it is refused with how to install it."""
    assert 'rviz2' not in open(os.path.join(REPO, 'package.xml')).read()


def test_the_dds_profile_is_set_before_the_node_is_executed(description):
    actions = _run(description, dds_profile='/mine.xml')
    names = [type(a).__name__ for a in actions]
    assert names.index('SetEnvironmentVariable') < names.index('Node'), names


def test_an_image_topic_under_the_template_namespace_is_not_rewritten_twice(tmp_path,
                                                                            monkeypatch):
    from anomseg_ros.ros.rviz import write_rviz_config
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    template = os.path.join(REPO, 'config', 'anomseg.rviz')
    path = write_rviz_config(template, image='/anomseg/image_raw', namespace='cam2')
    text = open(path).read()
    assert 'Value: /anomseg/image_raw' in text and 'Value: /cam2/overlay' in text
    assert 'Value: /cam2/image_raw' not in text
    again = write_rviz_config(template, image='/anomseg/image_raw', namespace='cam2')
    assert again == path and len(os.listdir(os.path.dirname(path))) == 1  # nothing left over
