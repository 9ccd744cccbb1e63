"""The shape of the package: a ROS-free core that never imports its adapters (cli/, ros/), no
import cycle among its modules or its parts, and registries that code outside the package
extends (docs/extending.md's examples, run here as a user would)."""
import ast
import os
import re

import pytest

from anomseg_ros.checkpoint import read_checkpoint
from test_training import write_tiny_cityscapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAPTERS = ('anomseg_ros.cli', 'anomseg_ros.ros', 'anomseg_ros.detector',
            'anomseg_ros.managed_detector')


def _modules():
    """{module name: file} of anomseg_ros and rosbag_tools."""
    modules = {}
    for package in ('anomseg_ros', 'rosbag_tools'):
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.')
                    modules[module.removesuffix('.__init__')] = path
    return modules


def _imports(modules):
    """{module: modules of the package it imports}, at any depth of the file (function-level
    imports count: they run too)."""
    graph = {}
    for module, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    name = f'{node.module}.{alias.name}'
                    found.add(name if name in modules else node.module)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def _cycles(graph):
    """The strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return cycles


def _part(module):
    """anomseg_ros.scoring.base -> anomseg_ros.scoring (a top-level part of the package)."""
    return '.'.join(module.split('.')[:2])


def test_no_import_cycle_between_modules_or_parts():
    graph = _imports(_modules())
    assert _cycles(graph) == []
    parts = {}
    for module, imported in graph.items():
        parts.setdefault(_part(module), set()).update(
            _part(m) for m in imported if _part(m) != _part(module))
    assert _cycles(parts) == []


def test_the_core_never_imports_the_cli_or_ros():
    graph = _imports(_modules())
    upward = sorted((module, imported) for module, targets in graph.items()
                    if module.startswith('anomseg_ros') and not module.startswith(ADAPTERS)
                    for imported in targets if imported.startswith(ADAPTERS))
    assert upward == []


def test_the_core_never_parses_a_command_line():
    """argparse belongs to the adapters: the core takes typed values (and names its fields,
    not command-line flags, in its errors)."""
    parsers = []
    for module, path in _modules().items():
        if module.startswith(ADAPTERS) or not module.startswith('anomseg_ros'):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) else [])
            if 'argparse' in names:
                parsers.append(module)
    assert parsers == []


def test_the_core_names_fields_not_flags_in_its_errors():
    """A core error names the field it was given (`` `void_share` ``; the command line says
    it as its flag); a ``--flag`` may appear only in a whole command it suggests."""
    flags = []
    for module, path in _modules().items():
        if module.startswith(ADAPTERS) or not module.startswith('anomseg_ros'):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                text = ''.join(n.value for arg in node.exc.args for n in ast.walk(arg)
                               if isinstance(n, ast.Constant) and isinstance(n.value, str))
                if re.search(r'(^|[\s(])--[a-z]', text) and 'anomseg ' not in text:
                    flags.append(f'{module}:{node.lineno}: {text[:80]}')
    assert flags == []


def test_the_checker_sees_a_cycle_and_an_upward_import():
    assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [['a', 'b', 'c']]
    assert _part('anomseg_ros.scoring.base') == 'anomseg_ros.scoring'


def test_backbones_declare_what_they_are():
    from anomseg_ros.backbones import backbone_class, create_backbone, list_backbones
    from anomseg_ros.errors import ConfigError
    for name in list_backbones():
        cls = backbone_class(name)
        model = create_backbone(name, num_classes=7)
        assert cls.classifier_key in model.state_dict(), name
        assert model.state_dict()[cls.classifier_key].shape[cls.classifier_axis] == 7, name
        assert any(p.startswith(cls.last_block) for p, _ in model.named_parameters()), name
        splits = all(callable(getattr(cls, f, None)) for f in ('forward_features', 'forward_head'))
        assert cls.has_features == splits, name
    with pytest.raises(ConfigError, match="backbone 'erfnet' does not take dropout"):
        create_backbone('erfnet', num_classes=19, dropout=0.3)


def _python_blocks(path):
    return re.findall(r'```python\n(.*?)```', open(path).read(), re.S)


@pytest.mark.slow
def test_extending_examples_run_from_outside_the_package(tmp_path, monkeypatch):
    """docs/extending.md, block by block in one namespace: a toy backbone trained with
    train(TrainConfig), a toy scorer through Detector, a torch.export runtime, a toy method
    trained with anomseg train-anomaly and run through Detector, and a new frame encoding."""
    from anomseg_ros.backbones.registry import BACKBONES
    from anomseg_ros.methods.base import METHODS
    from anomseg_ros.runtimes.registry import _RUNTIMES
    from anomseg_ros.scoring.registry import SCORERS
    write_tiny_cityscapes(tmp_path / 'cityscapes')
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(os.path.join(REPO, 'docs', 'extending.md'))
    assert len(blocks) == 7
    namespace = {'__name__': 'extending_example'}
    try:
        for block in blocks:
            exec(compile(block, 'docs/extending.md', 'exec'), namespace)
        saved = read_checkpoint(str(tmp_path / 'runs' / 'noise' / 'last.pt'))
        assert saved['options'] == {'square': 6}  # the method's own flag, kept with the run
        assert saved['config']['method'] == 'noise_square'
    finally:  # leave the registries and the encoding table as they were for the other tests
        from anomseg_ros.data.messages import INPUT_ENCODINGS
        INPUT_ENCODINGS.pop('8UC3', None)
        for registry, name in ((BACKBONES, 'tiny_fcn'), (SCORERS, 'margin'),
                               (SCORERS, 'noise_square'), (METHODS, 'noise_square'),
                               (_RUNTIMES, 'torch_export')):
            registry._factories.pop(name, None)


def test_an_installed_plugin_is_known_to_the_command_line(tmp_path):
    """A backbone of a third-party package, declared as an entry point of
    anomseg_ros.backbones, is a valid --backbone of anomseg train without an import of ours."""
    import subprocess
    import sys
    site = tmp_path / 'site'
    (site / 'tiny_plugin').mkdir(parents=True)
    (site / 'tiny_plugin' / '__init__.py').write_text(
        'from torch import nn\n'
        'from anomseg_ros.backbones import register_backbone\n'
        '@register_backbone("tiny_plugin_fcn")\n'
        'class TinyFcn(nn.Module):\n'
        '    def __init__(self, num_classes=19):\n'
        '        super().__init__()\n'
        '        self.classifier = nn.Conv2d(3, num_classes, 1)\n'
        '    def forward(self, x):\n'
        '        return self.classifier(x)\n')
    info = site / 'tiny_plugin-0.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n')
    (info / 'entry_points.txt').write_text('[anomseg_ros.backbones]\ntiny = tiny_plugin\n')
    env = {**os.environ, 'PYTHONPATH': f'{site}:{os.environ.get("PYTHONPATH", "")}'}
    done = subprocess.run([sys.executable, '-m', 'anomseg_ros.cli.main', 'train', '--help'],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'tiny_plugin_fcn' in done.stdout
    # a broken plugin is named and skipped
    (info / 'entry_points.txt').write_text('[anomseg_ros.backbones]\nbroken = no_such_module\n')
    done = subprocess.run([sys.executable, '-m', 'anomseg_ros.cli.main', 'train', '--help'],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and "plugin 'broken'" in done.stderr, done.stderr
