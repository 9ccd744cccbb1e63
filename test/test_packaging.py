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


def test_docstrings_as_ament_pep257_with_the_codes_setup_cfg_leaves_out():
    pytest.importorskip('pydocstyle', reason='pydocstyle is not installed (make setup does)')
    result = subprocess.run([sys.executable, '-m', 'pydocstyle', 'anomseg_ros', 'rosbag_tools',
                             'launch'], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_typed_core_modules_pass_mypy():
    """The modules the Makefile's TYPED lists (make lint), checked as make lint checks them."""
    import re
    pytest.importorskip('mypy', reason='mypy is not installed (make setup does)')
    makefile = open(os.path.join(REPO, 'Makefile')).read()
    typed = re.search(r'^TYPED := (.*?)\n\n', makefile, re.S | re.M).group(1)
    modules = typed.replace('\\', ' ').split()
    assert 'anomseg_ros/pipeline.py' in modules
    result = subprocess.run([sys.executable, '-m', 'mypy', *modules], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_xml_is_format_3_with_the_ros_dependencies():
    import xml.etree.ElementTree as ET
    root = ET.parse(os.path.join(REPO, 'package.xml')).getroot()
    assert root.get('format') == '3' and root.findtext('name') == 'anomseg_ros'
    depends = {e.text for e in root if e.tag.endswith('depend')}
    assert {'rclpy', 'sensor_msgs', 'diagnostic_msgs', 'rcl_interfaces'} <= depends
    assert root.find('export/build_type').text == 'ament_python'


# import name -> rosdep key; modules without a key are kept out of the node (NO_ROSDEP_KEY)
ROSDEP_KEYS = {
    'rclpy': 'rclpy', 'rcl_interfaces': 'rcl_interfaces', 'sensor_msgs': 'sensor_msgs',
    'diagnostic_msgs': 'diagnostic_msgs', 'ament_index_python': 'ament_index_python',
    'launch': 'launch', 'launch_ros': 'launch_ros', 'torch': 'python3-torch',
    'torchvision': 'python3-torchvision', 'numpy': 'python3-numpy', 'cv2': 'python3-opencv',
    'PIL': 'python3-pil', 'yaml': 'python3-yaml', 'scipy': 'python3-scipy',
    'tqdm': 'python3-tqdm', 'matplotlib': 'python3-matplotlib', 'std_msgs': 'std_msgs',
    'vision_msgs': 'vision_msgs', 'h5py': 'python3-h5py',
}
NO_ROSDEP_KEY = {'rosbags', 'cityscapesscripts', 'openvino', 'nncf', 'onnx', 'onnxruntime',
                 'ray'}
NOT_IMPORTED = set()


def _third_party_imports(*folders):
    import ast
    found = set()
    for folder in folders:
        for directory, _, files in os.walk(os.path.join(REPO, folder)):
            for file in files:
                if not file.endswith('.py'):
                    continue
                tree = ast.parse(open(os.path.join(directory, file)).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.Import):
                        found.update(alias.name.split('.')[0] for alias in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0:
                        found.add(node.module.split('.')[0])
    return {m for m in found if m not in sys.stdlib_module_names and
            m not in ('anomseg_ros', 'rosbag_tools')}


def test_package_xml_declares_exactly_what_the_package_imports():
    """A rosdep-only install can start the node: every import has its key in package.xml, and
    package.xml declares nothing the package does not use."""
    import xml.etree.ElementTree as ET
    root = ET.parse(os.path.join(REPO, 'package.xml')).getroot()
    declared = {e.text for e in root if e.tag == 'exec_depend'}
    imported = _third_party_imports('anomseg_ros', 'launch', 'rosbag_tools')
    unknown = imported - set(ROSDEP_KEYS) - NO_ROSDEP_KEY
    assert not unknown, f'add these imports to ROSDEP_KEYS and package.xml: {unknown}'
    needed = {ROSDEP_KEYS[m] for m in imported if m in ROSDEP_KEYS}
    assert needed - declared == set(), 'imported but not declared'
    assert declared - needed - NOT_IMPORTED == set(), 'declared but never imported'


def test_the_node_imports_nothing_without_a_rosdep_key():
    code = ('import sys, anomseg_ros.ros.detector_node, anomseg_ros.cli.main; '
            'print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert 'rclpy' in loaded and not loaded & NO_ROSDEP_KEY, loaded & NO_ROSDEP_KEY


def test_starting_the_node_with_erfnet_does_not_import_torchvision():
    """torchvision's import pulls in torch._dynamo, about 2 s of every start (docs/speed.md):
    only the backbones built on its ResNets import it, when they are built."""
    code = ('import sys, anomseg_ros.ros.detector_node, anomseg_ros.cli.main; '
            'from anomseg_ros.backbones import create_backbone; '
            'create_backbone("erfnet", num_classes=19); '
            'print(" ".join(sorted(m for m in sys.modules if m.startswith(("torchvision", '
            '"torch._dynamo")))))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_the_label_table_is_cityscapesscripts_one():
    from cityscapesscripts.helpers.labels import labels
    from anomseg_ros.labels import CITYSCAPES_LABELS
    theirs = [(lb.id, lb.name, 255 if lb.trainId in (-1, 255) else lb.trainId, lb.color)
              for lb in labels]
    assert [tuple(label) for label in CITYSCAPES_LABELS] == theirs


def _flatten(tree, prefix=''):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


def test_config_file_and_node_reference_agree_with_the_parameter_table():
    """One table of parameters: config/detector.yaml has each with its default, and the node's
    reference page (docs/node.md) names each (publish.<output> as one row)."""
    import yaml
    from anomseg_ros.ros.parameters import PARAMS
    config = yaml.safe_load(open(os.path.join(REPO, 'config', 'detector.yaml')))
    values = dict(_flatten(config['/**']['ros__parameters']))
    assert set(values) == {p.name for p in PARAMS}
    for param in PARAMS:
        assert values[param.name] == param.default, param.name
    reference = open(os.path.join(REPO, 'docs', 'node.md')).read()
    for param in PARAMS:
        name = 'publish.<output>' if param.name.startswith('publish.') else param.name
        assert f'`{name}`' in reference, name


def test_one_version_source():
    """setup.py reads anomseg_ros.__version__; package.xml says the same."""
    import xml.etree.ElementTree as ET
    import anomseg_ros
    version = ET.parse(os.path.join(REPO, 'package.xml')).getroot().find('version').text
    assert version == anomseg_ros.__version__
    assert 'version=VERSION' in open(os.path.join(REPO, 'setup.py')).read()


def test_the_scorer_lists_of_launch_config_and_node_reference_are_the_registrys():
    """The launch argument's description, config/detector.yaml and the node reference's
    parameter row name every registered scorer (the classic ones and every method's): none is
    forgotten."""
    import re
    import anomseg_ros.methods  # noqa: F401 - the methods register their scorers
    from anomseg_ros.scoring import list_scorers
    registered = set(list_scorers())

    def names(text):
        return set(re.findall(r'[a-z_]+', text)) & registered

    launch = open(os.path.join(REPO, 'launch', 'detector.launch.py')).read()
    described = re.search(r"DeclareLaunchArgument\('scorer'.*?description=(.*?)\),", launch,
                          re.S).group(1)
    config = next(line for line in open(os.path.join(REPO, 'config', 'detector.yaml'))
                  if line.strip().startswith('scorer:'))
    reference = next(line for line in open(os.path.join(REPO, 'docs', 'node.md'))
                     if line.startswith('| `scorer` |'))
    for where, text in (('launch/detector.launch.py', described),
                        ('config/detector.yaml', config.split('#', 1)[1]),
                        ('docs/node.md', reference)):
        assert names(text) == registered, (where, registered ^ names(text))


def test_every_bench_script_imports_and_says_how_to_run_it():
    """The benchmarks are run by hand (make bench), not by the tests: each must at least
    import against the current package and print its usage."""
    import glob
    import subprocess
    import sys
    scripts = sorted(glob.glob(os.path.join(REPO, 'bench', '*.py')))
    assert scripts
    failed = []
    for script in scripts:
        done = subprocess.run([sys.executable, script, '--help'], capture_output=True,
                              text=True, timeout=120)
        if done.returncode != 0 or 'usage' not in done.stdout:
            failed.append(f'{os.path.basename(script)}: {done.stderr.strip()[-200:]}')
    assert failed == []
