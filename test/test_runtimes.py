"""Exported models: ONNX (ONNX Runtime) and OpenVINO IR, run by the Detector like checkpoints."""
import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from anomseg_ros.cli.main import main
from anomseg_ros import runtimes
from anomseg_ros.errors import CheckpointError, ConfigError
from anomseg_ros.pipeline import Detector
from anomseg_ros.runtimes import auto_runtime, get_runtime
from anomseg_ros.precision import cpu_has_native_bf16

pytest.importorskip('onnxruntime', reason='ONNX Runtime is not installed (pip install -r '
                    'requirements.txt installs it)')
pytest.importorskip('openvino', reason='OpenVINO is not installed (pip install -r '
                    'requirements.txt installs it)')

# OpenVINO and NNCF (which patches torch when imported) run in a pytest process of their own:
# see the Makefile's test target
pytestmark = pytest.mark.runtimes
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, (50, 90, 3), dtype=np.uint8) for _ in range(2)]


@pytest.fixture(scope='module')
def reference(random_checkpoint):
    return Detector.from_checkpoint(random_checkpoint, device='cpu', precision='fp32',
                                    runtime='torch')


def _export(tmp_path, checkpoint, fmt, *extra):
    out = str(tmp_path / ('model.onnx' if fmt == 'onnx' else 'model.xml'))
    assert main(['export', checkpoint, '--format', fmt, '--out', out, *extra]) == 0
    return out


def test_onnx_runs_in_onnxruntime_with_the_same_logits_and_metadata(tmp_path,
                                                                    random_checkpoint,
                                                                    reference):
    path = _export(tmp_path, random_checkpoint, 'onnx', '--dynamic')
    detector = Detector.from_checkpoint(path)
    assert detector.runtime == 'onnxruntime' and detector.device.type == 'cpu'
    assert detector.info.input_size_hw == reference.info.input_size_hw == (64, 128)
    assert detector.info.class_names == reference.info.class_names
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    wide = Detector.from_checkpoint(path, input_size_hw=(64, 256))  # dynamic: another size
    assert wide.logits(IMAGES[:1]).shape[-2:] == (64, 256)
    for ours, theirs in zip(detector.predict_batch(IMAGES), reference.predict_batch(IMAGES)):
        assert (ours.labels == theirs.labels).mean() > 0.99


def test_openvino_runs_fp32_and_bf16(tmp_path, random_checkpoint, reference):
    path = _export(tmp_path, random_checkpoint, 'openvino')
    fp32 = Detector.from_checkpoint(path, precision='fp32')
    assert fp32.runtime == 'openvino' and fp32.precision_name == 'fp32'
    # in float32 the graph normalises the uint8 images itself, as PyTorch does
    assert fp32.model.takes_images and fp32.preprocess(IMAGES).dtype == torch.uint8
    np.testing.assert_allclose(fp32.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    with pytest.raises(ConfigError, match=r'takes uint8 \(B,H,W,3\) RGB images'):
        fp32.model(reference.preprocess(IMAGES))
    bf16 = Detector.from_checkpoint(path, precision='bf16')
    assert not bf16.model.takes_images  # the normalisation would run in bf16
    assert bf16.model.compiled.input(0).get_element_type().get_type_name() == 'f32'
    assert torch.isfinite(bf16.logits(IMAGES)).all()
    assert Detector.from_checkpoint(path).precision_name == \
        ('bf16' if cpu_has_native_bf16() else 'fp32')  # auto


def test_openvino_computes_the_labels_in_its_graph_as_pytorch_does(tmp_path, random_checkpoint,
                                                                   reference):
    """The labels' argmax is a TopK output of the compiled graph, taken once per forward; on
    the same logits it equals PyTorch's, for one frame and a batch, and predict uses it."""
    path = _export(tmp_path, random_checkpoint, 'openvino')
    detector = Detector.from_checkpoint(path, precision='fp32')
    channels = detector.info.label_channels
    assert channels == 20  # the 19 classes and void, not a method's outputs
    for images in (IMAGES[:1], IMAGES):
        logits, indices = detector._forward(images)
        assert indices is not None and indices.shape == (len(images), *logits.shape[2:])
        assert torch.equal(indices, logits[:, :channels].max(dim=1).indices)
        assert detector.model.last_labels is None  # taken: never read for another forward
        assert detector._forward(images)[1] is not None
    labels = detector.semantic(logits, indices)
    assert torch.equal(labels, detector.semantic(logits))
    assert np.array_equal(detector.predict(IMAGES[0]).labels, reference.predict(IMAGES[0]).labels)


def test_openvino_bf16_keeps_the_convolution_on_the_image_in_float32(tmp_path,
                                                                     random_checkpoint):
    """The IR marks the layers on the image 'precise', and OpenVINO honours it under bf16:
    what keeps the scores (the rest runs in bf16 where the CPU has it)."""
    import xml.etree.ElementTree as ElementTree
    path = _export(tmp_path, random_checkpoint, 'openvino')
    precise = [layer.get('name') for layer in ElementTree.parse(path).getroot().iter('layer')
               if layer.find("rt_info/attribute[@name='precise']") is not None]
    assert precise == ['__module.encoder.initial_block.conv/aten::_convolution/Convolution']
    runtime = Detector.from_checkpoint(path, precision='bf16').model.compiled.get_runtime_model()
    precisions = {op.get_friendly_name(): op.get_rt_info()['runtimePrecision'].astype(str)
                  for op in runtime.get_ordered_ops()
                  if op.get_rt_info()['layerType'].astype(str) == 'Convolution'}
    assert precisions.pop(precise[0]) == 'f32'
    if cpu_has_native_bf16():
        assert set(precisions.values()) == {'bf16'}


def test_int8_needs_calibration_images_and_runs(tmp_path, random_checkpoint, capsys):
    from anomseg_ros.data.images import write_rgb
    assert main(['export', random_checkpoint, '--format', 'onnx', '--out',
                 str(tmp_path / 'x.onnx'), '--int8', '--calibration', str(tmp_path)]) == 2
    assert '--format openvino' in capsys.readouterr().err
    assert main(['export', random_checkpoint, '--format', 'openvino', '--out',
                 str(tmp_path / 'x.xml'), '--int8', '--calibration', str(tmp_path)]) == 2
    assert 'no images' in capsys.readouterr().err
    for index, image in enumerate(IMAGES * 3):
        write_rgb(str(tmp_path / 'calib' / f'{index}.png'), image)
    path = _export(tmp_path, random_checkpoint, 'openvino', '--int8', '--calibration',
                   str(tmp_path / 'calib'))
    detector = Detector.from_checkpoint(path, precision='fp32')
    assert detector.predict(IMAGES[0]).score_map.shape == (50, 90)
    import openvino
    types = {op.get_type_name() for op in openvino.Core().read_model(path).get_ordered_ops()}
    assert 'FakeQuantize' in types  # quantized


def test_score_tail_and_its_fpr95():
    from anomseg_ros.runtimes.export import score_tail, tail_fpr95
    logits = np.zeros((1, 2, 2, 5), np.float32)
    logits[0, 0, 0] = [5, 4, 3, 2, 1]  # MaxLogit score = -max logit: the last pixels rank top
    logits[0, 0, 1] = [9, 8, 7, 6, 0.5]
    tail = score_tail(logits, share=0.2)  # 2 of 10 pixels
    assert tail.tolist() == [[False] * 4 + [True] + [False] * 4 + [True]]
    assert tail_fpr95(tail, logits).tolist() == [0.0]
    moved = logits.copy()
    moved[0, 0, 0, :3] = 0.8  # three of the 8 other pixels now outscore the tail's lowest
    assert tail_fpr95(tail, moved).tolist() == [100.0 * 3 / 8]


def test_int8_with_accuracy_control_keeps_layers_in_float(tmp_path, random_checkpoint,
                                                          capsys):
    """--int8-max-drop runs NNCF's accuracy control. With the bundled model on synthetic
    scenes, plain int8 reorders the border of its score tail, so some layers go back to float
    (fewer FakeQuantize than plain int8)."""
    from anomseg_ros.data.images import write_rgb
    from anomseg_ros.data.synthetic import render_scene
    from anomseg_ros.paths import default_weights
    import openvino
    assert main(['export', random_checkpoint, '--format', 'openvino', '--out',
                 str(tmp_path / 'x.xml'), '--int8-max-drop', '1']) == 2
    assert '--int8 --calibration' in capsys.readouterr().err
    if default_weights() is None:
        pytest.skip('the bundled models/erfnet_synthetic.pt is not installed')
    for index in range(6):
        image = render_scene(np.random.default_rng(100 + index), 256, 128)[0]
        write_rgb(str(tmp_path / 'calib' / f'{index}.png'), image)
    counts = {}
    for name, extra in (('plain', []), ('controlled', ['--int8-max-drop', '0.5'])):
        out = str(tmp_path / f'{name}.xml')
        assert main(['export', default_weights(), '--format', 'openvino', '--out', out,
                     '--input-size', '128x64', '--int8', '--calibration',
                     str(tmp_path / 'calib'), *extra]) == 0
        written = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert written['int8_max_drop'] == (0.5 if extra else None)
        ops = [op.get_type_name() for op in openvino.Core().read_model(out).get_ordered_ops()]
        counts[name] = ops.count('FakeQuantize')
        assert Detector.from_checkpoint(out, precision='fp32').predict(
            IMAGES[0]).score_map.shape == (50, 90)
    assert counts['controlled'] < counts['plain'], counts


def test_exported_models_are_refused_clearly(tmp_path, random_checkpoint, capsys):
    with pytest.raises(CheckpointError, match='does not exist'):
        Detector.from_checkpoint(str(tmp_path / 'absent.onnx'))
    (tmp_path / 'junk.onnx').write_bytes(b'not onnx')
    with pytest.raises(CheckpointError, match='junk.onnx'):
        Detector.from_checkpoint(str(tmp_path / 'junk.onnx'))
    assert main(['export', random_checkpoint, '--format', 'openvino', '--out',
                 str(tmp_path / 'wrong.onnx')]) == 2
    assert '.xml file' in capsys.readouterr().err


def _entries(root):
    folder = root / 'anomseg_ros' / 'openvino'
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and p.name != 'compiled' and not p.name.startswith('.tmp-'))


def test_runtime_openvino_converts_a_checkpoint_once_and_caches_it(tmp_path, monkeypatch,
                                                                   random_checkpoint, reference):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    detector = Detector.from_checkpoint(random_checkpoint, runtime='openvino', precision='fp32')
    assert detector.runtime == 'openvino' and detector.info.source == random_checkpoint
    assert detector.notes == []  # a first build is no warning
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    entries = _entries(tmp_path / 'cache')
    assert len(entries) == 1 and entries[0].endswith('_erfnet_128x64_r2')
    entry = tmp_path / 'cache' / 'anomseg_ros' / 'openvino' / entries[0]
    assert sorted(os.listdir(entry)) == ['manifest.json', 'model.bin', 'model.xml']
    manifest = json.loads((entry / 'manifest.json').read_text())
    assert manifest['input_size_hw'] == [64, 128] and manifest['backbone'] == 'erfnet'
    assert manifest['package_version'] and set(manifest['sha256']) == {'model.xml', 'model.bin'}
    assert oct(os.stat(entry.parent).st_mode & 0o777) == '0o700'  # private to the user
    again = Detector.from_checkpoint(random_checkpoint, runtime='openvino')  # from the cache
    assert again.notes == [] and _entries(tmp_path / 'cache') == entries


def _other_checkpoint(tmp_path):
    from anomseg_ros.backbones import create_backbone
    from anomseg_ros.checkpoint import ModelInfo, save_checkpoint
    torch.manual_seed(1)
    path = str(tmp_path / 'other.pt')
    save_checkpoint(path, create_backbone('erfnet', num_classes=20),
                    ModelInfo(input_size_hw=(64, 128), pretrained=False))
    return path


def _damage_truncated_bin(entry, other):
    data = (entry / 'model.bin').read_bytes()
    (entry / 'model.bin').write_bytes(data[:len(data) // 2])


def _damage_swapped_for_another_model(entry, other):
    for name in ('model.xml', 'model.bin'):
        (entry / name).write_bytes((other / name).read_bytes())


def _damage_swapped_xml_only(entry, other):
    (entry / 'model.xml').write_bytes((other / 'model.xml').read_bytes())


def _damage_manifest_of_another_version(entry, other):
    manifest = json.loads((entry / 'manifest.json').read_text())
    manifest['package_version'] = '0.0.1'
    (entry / 'manifest.json').write_text(json.dumps(manifest))


@pytest.mark.parametrize('damage,reason', [
    (_damage_truncated_bin, 'model.bin does not match'),
    (_damage_swapped_for_another_model, 'does not match the hash'),
    (_damage_swapped_xml_only, 'model.xml does not match'),
    (_damage_manifest_of_another_version, "package_version '0.0.1'"),
])
def test_a_damaged_or_swapped_cache_entry_is_rebuilt_with_one_warning(
        tmp_path, monkeypatch, random_checkpoint, reference, damage, reason):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    Detector.from_checkpoint(random_checkpoint, runtime='openvino', precision='fp32')
    Detector.from_checkpoint(_other_checkpoint(tmp_path), runtime='openvino', precision='fp32')
    folder = tmp_path / 'cache' / 'anomseg_ros' / 'openvino'
    ours = next(folder / name for name in _entries(tmp_path / 'cache')
                if name.startswith(runtimes.cache.file_sha256(random_checkpoint)[:16]))
    theirs = next(folder / name for name in _entries(tmp_path / 'cache')
                  if folder / name != ours)
    damage(ours, theirs)
    import logging
    warned = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    # a handler on the package's logger, as the node's RosLogHandler (the package's loggers
    # hand their records up to it even under launch_testing's LaunchLogger class)
    logging.getLogger('anomseg_ros').addHandler(handler)
    try:
        detector = Detector.from_checkpoint(random_checkpoint, runtime='openvino',
                                            precision='fp32')
    finally:
        logging.getLogger('anomseg_ros').removeHandler(handler)
    assert len(detector.notes) == 1 and reason in detector.notes[0], detector.notes
    assert 'rebuilt' in detector.notes[0]
    assert warned == detector.notes
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    assert Detector.from_checkpoint(random_checkpoint, runtime='openvino').notes == []


def test_an_unwritable_or_full_cache_folder_runs_uncached_with_one_warning(
        tmp_path, monkeypatch, random_checkpoint, reference):
    import errno
    import tempfile
    blocked = tmp_path / 'not_a_folder'
    blocked.write_text('a file where the cache folder would be')  # read-only for root too
    monkeypatch.setenv('XDG_CACHE_HOME', str(blocked))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path / 'tmp'))
    os.makedirs(tmp_path / 'tmp')
    detector = Detector.from_checkpoint(random_checkpoint, runtime='openvino', precision='fp32')
    assert len(detector.notes) == 1 and 'cannot be written' in detector.notes[0]
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    assert os.listdir(tmp_path / 'tmp') == []  # the run's own conversion is not left behind
    # a disk that fills up while the entry is written
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(runtimes.cache, '_fsync', full)
    detector = Detector.from_checkpoint(random_checkpoint, runtime='openvino', precision='fp32')
    assert len(detector.notes) == 1 and 'No space left' in detector.notes[0]
    assert detector.logits(IMAGES).shape[1] == 20
    assert _entries(tmp_path / 'cache') == []  # no half-written entry


def test_a_conversion_killed_half_way_leaves_no_entry_and_the_next_start_converts(
        tmp_path, random_checkpoint, reference):
    """SIGKILL while the IR is being written: only a temporary folder stays, which the next
    start removes before it converts again."""
    import subprocess
    import sys
    script = (
        'import os, signal\n'
        'from anomseg_ros.runtimes.cache import IrCache\n'
        'def build(xml):\n'
        '    open(xml, "w").write("<net")\n'
        '    os.kill(os.getpid(), signal.SIGKILL)\n'
        f'IrCache().get("{runtimes.cache.file_sha256(random_checkpoint)[:16]}_erfnet_128x64_r2",'
        ' {}, build)\n')
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path / 'cache')}
    killed = subprocess.run([sys.executable, '-c', script], env=env, timeout=120)
    assert killed.returncode == -9
    folder = tmp_path / 'cache' / 'anomseg_ros' / 'openvino'
    assert [n for n in os.listdir(folder) if n.startswith('.tmp-')]  # what the kill left
    assert _entries(tmp_path / 'cache') == []
    os.environ['XDG_CACHE_HOME'], before = str(tmp_path / 'cache'), os.environ.get(
        'XDG_CACHE_HOME')
    try:
        detector = Detector.from_checkpoint(random_checkpoint, runtime='openvino',
                                            precision='fp32')
    finally:
        if before is None:
            del os.environ['XDG_CACHE_HOME']
        else:
            os.environ['XDG_CACHE_HOME'] = before
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-4, rtol=1e-4)
    assert not [n for n in os.listdir(folder) if n.startswith('.tmp-')]
    assert len(_entries(tmp_path / 'cache')) == 1


def test_an_ir_with_another_models_bin_or_metadata_that_does_not_fit_is_refused(
        tmp_path, random_checkpoint):
    from anomseg_ros.checkpoint import load_model, save_checkpoint
    ours = _export(tmp_path, random_checkpoint, 'openvino')
    other_dir = tmp_path / 'other'
    other_dir.mkdir()
    theirs = _export(other_dir, _other_checkpoint(tmp_path), 'openvino')
    os.replace(theirs[:-4] + '.bin', ours[:-4] + '.bin')  # same size, other weights
    with pytest.raises(CheckpointError, match='not the weights file exported with') as refused:
        Detector.from_checkpoint(ours)
    assert '\n' not in str(refused.value)
    # metadata naming 5 classes for a network with 20 outputs
    model, info = load_model(random_checkpoint)
    info.class_names = info.class_names[:5]
    bad = str(tmp_path / 'five_classes.pt')
    save_checkpoint(bad, model, info)
    with pytest.raises(CheckpointError, match='does not fit'):
        Detector.from_checkpoint(bad, runtime='torch')


def test_runtime_auto_takes_openvino_on_the_cpu_and_says_why(tmp_path, monkeypatch,
                                                             random_checkpoint, reference):
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    detector = Detector.from_checkpoint(random_checkpoint, device='cpu')
    assert detector.runtime == 'openvino' and detector.runtime_reason.startswith('auto')
    assert detector.precision_name == ('bf16' if cpu_has_native_bf16() else 'fp32')
    np.testing.assert_allclose(detector.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=0.1, rtol=0.05)  # bf16 where the CPU has it
    random = Detector.from_checkpoint('random', device='cpu', input_size_hw=(64, 128))
    assert random.runtime == 'torch' and 'random weights' in random.runtime_reason
    asked = Detector.from_checkpoint(random_checkpoint, device='cpu', runtime='torch')
    assert asked.runtime == 'torch' and asked.runtime_reason == 'asked for'
    # a GPU runs PyTorch, and without OpenVINO auto is PyTorch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    runtime, reason = auto_runtime(random_checkpoint, torch.device('cuda'))
    assert (runtime.name, reason) == ('torch', 'auto: PyTorch runs the GPU')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'openvino' else real_find_spec(name, *a))
    runtime, reason = auto_runtime(random_checkpoint, torch.device('cpu'))
    assert runtime.name == 'torch' and 'OpenVINO is not installed' in reason
    assert Detector.from_checkpoint(random_checkpoint, device='cpu').runtime == 'torch'
    # a model OpenVINO cannot run (SynBoost: test_synboost) is run by PyTorch, saying why
    monkeypatch.undo()
    monkeypatch.setattr(get_runtime('openvino'), 'load', _refuse)
    refused = Detector.from_checkpoint(random_checkpoint, device='cpu')
    assert refused.runtime == 'torch' and 'OpenVINO cannot run it' in refused.runtime_reason
    with pytest.raises(ConfigError, match='runs in PyTorch only'):
        Detector.from_checkpoint(random_checkpoint, device='cpu', runtime='openvino')


def _refuse(request, **_):
    raise ConfigError('a synboost checkpoint runs in PyTorch only')


@pytest.mark.parametrize('backbone', ['erfnet', 'enet', 'bisenetv1', 'bisenetv2', 'resnet50'])
def test_every_backbone_exports_to_onnx_with_the_same_logits(tmp_path, backbone, capsys):
    """ENet's max-unpooling with an output size does not trace: it is refused with the
    reason; the others give PyTorch's logits."""
    from anomseg_ros.backbones import create_backbone
    from anomseg_ros.checkpoint import ModelInfo, save_checkpoint
    torch.manual_seed(0)
    path = str(tmp_path / f'{backbone}.pt')
    save_checkpoint(path, create_backbone(backbone, num_classes=19),
                    ModelInfo(backbone=backbone, num_classes=19, void_channel=None,
                              input_size_hw=(64, 128)))
    reference = Detector.from_checkpoint(path, precision='fp32', runtime='torch')
    if backbone == 'enet':
        assert main(['export', path, '--format', 'onnx', '--out',
                     str(tmp_path / 'enet.onnx')]) == 2
        err = capsys.readouterr().err
        assert 'enet cannot be exported to ONNX' in err and 'runtime torch' in err
        return
    onnx = Detector.from_checkpoint(_export(tmp_path, path, 'onnx'))
    np.testing.assert_allclose(onnx.logits(IMAGES).numpy(), reference.logits(IMAGES).numpy(),
                               atol=1e-3, rtol=1e-3)


SIGNAL_AFTER_OPENVINO = '''
import gc, os, signal, sys
import numpy as np
from anomseg_ros.data.images import write_rgb
from anomseg_ros.pipeline import Detector
from anomseg_ros.runtimes import export_model
checkpoint, folder = sys.argv[1:]
for index in range(4):
    write_rgb(f'{folder}/calib/{index}.png',
              np.random.default_rng(index).integers(0, 256, (40, 60, 3), dtype=np.uint8))
export_model(checkpoint, 'openvino', f'{folder}/int8.xml', calibration_dir=f'{folder}/calib')
first = Detector.from_checkpoint(checkpoint, runtime='openvino', precision='fp32')
second = Detector.from_checkpoint(f'{folder}/int8.xml', precision='fp32')
del first  # dropped in the order they were made, as the test suite and scripts do
gc.collect()
del second
gc.collect()
signal.signal(signal.SIGUSR1, lambda *_: print('handled', flush=True))
os.kill(os.getpid(), signal.SIGUSR1)
print('alive', flush=True)
'''


def test_a_signal_handled_after_openvino_models_are_dropped_does_not_crash(tmp_path,
                                                                           random_checkpoint):
    """OpenVINO's CPU plugin moves the thread's signal stack and puts back what it found;
    plugins dropped in the order they were made (not the reverse) left it on unmapped memory,
    and the next signal Python handled (a DataLoader's SIGCHLD, in training after OpenVINO
    had run) was a segmentation fault (runtimes.exported.openvino_core). Two models and an
    int8 export (NNCF's own Cores), dropped in the order they were made, then a signal: the
    process lives."""
    import subprocess
    import sys
    env = {**os.environ, 'XDG_CACHE_HOME': str(tmp_path / 'cache')}
    done = subprocess.run([sys.executable, '-c', SIGNAL_AFTER_OPENVINO, random_checkpoint,
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.split()[-2:] == ['handled', 'alive']


def test_precision_int8_quantizes_once_per_calibration_set_and_says_what_stayed_float(
        tmp_path, monkeypatch, random_checkpoint, capsys):
    """precision int8 from a checkpoint: quantized with NNCF on the calibration frames (a
    folder or a bag), cached under the checkpoint, size and frames' hash; a second start
    reads the cache, other frames make another entry; the note names the float layers."""
    from anomseg_ros.data.images import write_rgb
    from anomseg_ros.errors import DatasetError
    import openvino
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    with pytest.raises(ConfigError, match='needs calibration frames'):
        Detector.from_checkpoint(random_checkpoint, precision='int8')  # not synthetic-trained
    with pytest.raises(ConfigError, match='precision int8 quantizes a PyTorch checkpoint'):
        Detector.from_checkpoint(random_checkpoint, precision='int8', runtime='torch',
                                 calibration=str(tmp_path))
    for index, image in enumerate(IMAGES * 2):
        write_rgb(str(tmp_path / 'calib' / f'{index}.png'), image)
    detector = Detector.from_checkpoint(random_checkpoint, precision='int8', int8_max_drop=0,
                                        calibration=str(tmp_path / 'calib'))
    assert detector.precision_name == 'int8' and detector.runtime == 'openvino'
    assert any('convolutions stay in' in note and 'encoder.initial_block.conv' in note
               for note in detector.notes), detector.notes
    assert detector.predict(IMAGES[0]).score_map.shape == (50, 90)
    entries = _entries(tmp_path / 'cache')
    assert len(entries) == 1 and '_int8_' in entries[0]
    xml = [p for p in (tmp_path / 'cache' / 'anomseg_ros' / 'openvino' / entries[0]).iterdir()
           if p.suffix == '.xml'][0]
    types = [op.get_type_name() for op in openvino.Core().read_model(str(xml)).get_ordered_ops()]
    assert 'FakeQuantize' in types
    again = Detector.from_checkpoint(random_checkpoint, precision='int8', int8_max_drop=0,
                                     calibration=str(tmp_path / 'calib'))
    assert _entries(tmp_path / 'cache') == entries
    np.testing.assert_array_equal(again.predict(IMAGES[0]).score_map,
                                  detector.predict(IMAGES[0]).score_map)
    # a bag of the same camera is another calibration set: another entry; a bag recorded
    # from another topic is read from its only image topic
    from rosbag_tools.bags import BagWriter, image_message
    with BagWriter(str(tmp_path / 'bag'), 'mcap') as bag:
        for index, image in enumerate(IMAGES * 2):
            bag.write('/cam/image_raw', image_message(image, 1000 + index), 1000 + index)
    Detector.from_checkpoint(random_checkpoint, precision='int8', int8_max_drop=0,
                             calibration=str(tmp_path / 'bag'))
    assert len(_entries(tmp_path / 'cache')) == 2
    with pytest.raises(DatasetError, match='/other'):
        Detector.from_checkpoint(random_checkpoint, precision='int8', int8_max_drop=0,
                                 calibration=f'{tmp_path / "bag"}#/other')
    # and from the command line, the note printed
    assert main(['detect', str(tmp_path / 'calib' / '0.png'), '--out', str(tmp_path / 'out'),
                 '--weights', random_checkpoint, '--precision', 'int8', '--calibration',
                 str(tmp_path / 'calib'), '--int8-max-drop', '0']) == 0
    assert 'note: int8:' in capsys.readouterr().out
    assert len(_entries(tmp_path / 'cache')) == 2  # the cached one again


def test_precision_int8_of_the_bundled_model_calibrates_on_the_synthetic_world(
        tmp_path, monkeypatch):
    from anomseg_ros.paths import default_weights
    if default_weights() is None:
        pytest.skip('the bundled models/erfnet_synthetic.pt is not installed')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
    monkeypatch.setattr('anomseg_ros.runtimes.export.SYNTHETIC_FRAMES', 4)  # a quick test
    detector = Detector.from_checkpoint(default_weights(), precision='int8', int8_max_drop=0,
                                        input_size_hw=(64, 128))
    assert detector.precision_name == 'int8'
    assert detector.predict(IMAGES[0]).score_map.shape == (50, 90)


def test_runtimes_are_chosen_by_what_they_serve(random_checkpoint, monkeypatch):
    """The registry's facts, not names: the runtimes a user may ask for are those that run a
    checkpoint, a file is run by the runtime of its suffix, and a runtime that does not serve
    the asked device or precision is refused saying which it serves."""
    from anomseg_ros.checkpoint import load_model
    from anomseg_ros.errors import UnknownNameError
    from anomseg_ros.runtimes import file_runtime, Loaded, register_runtime, Runtime
    from anomseg_ros.runtimes.registry import _RUNTIMES
    from anomseg_ros.runtimes import runtime_choices
    assert runtime_choices() == ('auto', 'openvino', 'torch')
    assert file_runtime('m.XML').name == 'openvino'
    assert file_runtime('m.onnx').name == 'onnxruntime'
    assert file_runtime('m.pt') is None and file_runtime('random') is None
    with pytest.raises(UnknownNameError, match='valid runtimes'):
        get_runtime('tensorrt')
    with pytest.raises(ConfigError, match='runtime must be one of auto, openvino, torch'):
        Detector.from_checkpoint(random_checkpoint, runtime='onnxruntime')
    with pytest.raises(ValueError, match='already registered'):
        register_runtime(Runtime('torch', lambda request: None))
    loads = []

    def load_on_gpu(request):
        loads.append(request)
        model, info = load_model(request.weights)
        return Loaded(model, info)

    register_runtime(Runtime('gpu_only', load_on_gpu, files=('.gpu',), devices=('cuda',),
                             precisions=('fp16',)))
    try:
        with pytest.raises(ConfigError, match='runs on cuda .gpu_only.; use device cuda'):
            Detector.from_checkpoint('model.gpu', device='cpu')
        monkeypatch.setattr(get_runtime('torch'), 'precisions', ('fp32',))
        with pytest.raises(ConfigError, match='PyTorch runs fp32, not bf16'):
            Detector.from_checkpoint(random_checkpoint, runtime='torch', device='cpu',
                                     precision='bf16')
        assert not loads  # refused before anything was loaded
    finally:
        _RUNTIMES._factories.pop('gpu_only', None)
