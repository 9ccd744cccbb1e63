"""Backbone registry, ERFNet architecture, and checkpoint loading in both formats."""
import pytest
import torch

from anomseg_ros.backbones import create_backbone, list_backbones
from anomseg_ros.checkpoint import count_parameters, load_model, ModelInfo, save_checkpoint
from anomseg_ros.errors import CheckpointError, UnknownNameError


@pytest.mark.parametrize('name', list_backbones())
def test_every_backbone_forward_shape_and_finite(name):
    model = create_backbone(name, num_classes=20).eval()
    with torch.inference_mode():
        logits = model(torch.rand(2, 3, 64, 96))
    assert logits.shape == (2, 20, 64, 96)
    assert torch.isfinite(logits).all()


def test_erfnet_parameter_count_matches_the_paper():
    # Romera et al. / paper 000: 2.06 M parameters for 20 classes
    assert count_parameters(create_backbone('erfnet', num_classes=20)) == \
        pytest.approx(2.06e6, rel=0.01)


def test_erfnet_structure_follows_the_paper():
    model = create_backbone('erfnet', num_classes=20)
    dilations = [layer.conv3x1_2.dilation[0] for layer in model.encoder.layers
                 if hasattr(layer, 'conv3x1_2')]
    assert dilations == [1] * 5 + [2, 4, 8, 16] * 2
    assert len(model.decoder.layers) == 6


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError, match='erfnet'):
        create_backbone('segformer', num_classes=19)


def test_public_module_prefixed_state_dict_loads_strictly(tmp_path):
    source = create_backbone('erfnet', num_classes=20)
    state = {f'module.{k}': v for k, v in source.state_dict().items()}
    path = tmp_path / 'erfnet_pretrained.pth'
    torch.save(state, path)
    model, info = load_model(str(path))
    assert info.num_classes == 20 and info.void_channel == 19 and info.num_inlier_classes == 19
    assert info.mean == (0.0, 0.0, 0.0) and info.std == (1.0, 1.0, 1.0)
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_public_19_class_state_dict_has_no_void_channel(tmp_path):
    path = tmp_path / 'erfnet19.pth'
    torch.save(create_backbone('erfnet', num_classes=19).state_dict(), path)
    _, info = load_model(str(path))
    assert info.num_classes == 19 and info.void_channel is None


def test_own_checkpoint_round_trip_keeps_metadata(tmp_path):
    model = create_backbone('erfnet', num_classes=5)
    info = ModelInfo(num_classes=5, class_names=['a', 'b', 'c', 'd'], void_channel=4,
                     mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), input_size_hw=(256, 512),
                     temperature=1.5)
    path = str(tmp_path / 'mine.pt')
    save_checkpoint(path, model, info, epoch=3)
    loaded, loaded_info = load_model(path)
    assert loaded_info.class_names == ['a', 'b', 'c', 'd']
    assert loaded_info.mean == (0.5, 0.4, 0.3) and loaded_info.input_size_hw == (256, 512)
    assert loaded_info.temperature == 1.5 and loaded_info.void_channel == 4
    assert torch.load(path, weights_only=True)['epoch'] == 3
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_missing_corrupt_and_mismatched_weights_name_the_file(tmp_path):
    with pytest.raises(CheckpointError, match='nope.pth.*does not exist'):
        load_model(str(tmp_path / 'nope.pth'))
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='corrupt.pth.*cannot be read'):
        load_model(str(corrupt))
    state = create_backbone('erfnet', num_classes=20).state_dict()
    del state['decoder.output_conv.bias']
    partial = tmp_path / 'partial.pth'
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match='partial.pth.*missing keys'):
        load_model(str(partial))


def test_reference_weights_load_strictly(shared_data):
    path = f'{shared_data}/weights/erfnet_cityscapes_approx.pth'
    raw = torch.load(path, map_location='cpu', weights_only=True)
    assert len(raw) == 345 and all(k.startswith('module.') for k in raw)
    model, info = load_model(path)
    assert info.num_classes == 20
    assert count_parameters(model) == pytest.approx(2.06e6, rel=0.01)
