"""Backbone registry, the architectures of papers 000 / 001 (ERFNet, ENet, BiSeNet V1 / V2,
ResNet-50), the self-supervised ResNet-50 formats, and checkpoint loading in both formats."""
import pytest
import torch
import torchvision

from anomseg_ros.backbones import create_backbone, list_backbones
from anomseg_ros.backbones.bisenet import AUX_HEAD_PREFIXES
from anomseg_ros.backbones.heads import IsoMaxPlusHead
from anomseg_ros.backbones.resnet import load_pretrained_backbone, read_ssl_state
from anomseg_ros.checkpoint import count_parameters, load_model, ModelInfo, save_checkpoint
from anomseg_ros.errors import CheckpointError, UnknownNameError


def test_every_paper_backbone_is_registered():
    assert set(list_backbones()) >= {'enet', 'erfnet', 'bisenetv1', 'bisenetv2', 'resnet50'}


def _inference_parameters(model):
    return sum(p.numel() for n, p in model.named_parameters()
               if not n.startswith(AUX_HEAD_PREFIXES))


# published sizes: ERFNet 2.06 M at 20 classes (Romera et al.), ENet 0.37 M (Paszke et al.),
# BiSeNetV2 about 3.4 M at 19 (Yu et al.); BiSeNetV1 with ResNet-18: what we found, 13.28 M
# (the common implementation reports 13.3 M); ResNet-50 trunk 23.5 M plus a 2048 x C conv
@pytest.mark.parametrize('name,classes,published', [
    ('erfnet', 20, 2.06e6), ('enet', 19, 0.37e6), ('bisenetv2', 19, 3.4e6),
    ('bisenetv1', 19, 13.3e6), ('resnet50', 20, 23.508e6 + 2049 * 20)])
def test_parameter_count_within_5_percent_of_the_published(name, classes, published):
    count = _inference_parameters(create_backbone(name, num_classes=classes))
    assert count == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize('name', ['bisenetv1', 'bisenetv2'])
def test_bisenet_returns_auxiliary_outputs_in_training_only(name):
    model = create_backbone(name, num_classes=19)
    outputs = model.train()(torch.rand(2, 3, 64, 96))
    assert isinstance(outputs, tuple) and len(outputs) == (3 if name == 'bisenetv1' else 5)
    assert all(o.shape == (2, 19, 64, 96) for o in outputs)
    assert model.aux_weight == 1.0
    with torch.inference_mode():
        assert model.eval()(torch.rand(1, 3, 64, 96)).shape == (1, 19, 64, 96)


def test_enet_follows_table_1_of_paper_000():
    model = create_backbone('enet', num_classes=19)
    dilations = [model.get_submodule(f'dilated{s}_{i}').ext_conv2[0].dilation[0]
                 for s in (2, 3) for i in (2, 4, 6, 8)]
    assert dilations == [2, 4, 8, 16] * 2
    assert model.initial_block.main_branch.out_channels == 13  # + 3 pooled = 16 maps
    features = model.forward_features(torch.rand(1, 3, 64, 64))
    assert features.shape == (1, 16, 32, 32)  # bottleneck5.1 at half resolution


def _torchvision_resnet50_state(seed=0):
    torch.manual_seed(seed)
    return torchvision.models.resnet50(weights=None).state_dict()


def _write_ssl(path, fmt, state):
    """A checkpoint laid out as the published one of ``fmt``."""
    trunk = {k: v for k, v in state.items() if not k.startswith('fc.')}
    if fmt == 'barlowtwins':       # torch.hub resnet50.pth: the trunk only
        torch.save(trunk, path)
    elif fmt == 'mocov2':          # query / key encoders, MLP head, queue
        sd = {f'module.encoder_q.{k}': v for k, v in trunk.items()}
        sd.update({f'module.encoder_k.{k}': v for k, v in list(trunk.items())[:3]})
        sd.update({'module.encoder_q.fc.0.weight': torch.zeros(2048, 2048),
                   'module.encoder_q.fc.2.weight': torch.zeros(128, 2048),
                   'module.queue': torch.zeros(128, 8), 'module.queue_ptr': torch.zeros(1)})
        torch.save({'epoch': 800, 'arch': 'resnet50', 'state_dict': sd}, path)
    else:                          # simsiam: encoder with projector fc, predictor
        sd = {f'module.encoder.{k}': v for k, v in trunk.items()}
        sd.update({'module.encoder.fc.0.weight': torch.zeros(2048, 2048),
                   'module.predictor.0.weight': torch.zeros(512, 2048)})
        torch.save({'epoch': 100, 'arch': 'resnet50', 'state_dict': sd}, path)


@pytest.mark.parametrize('fmt', ['barlowtwins', 'mocov2', 'simsiam'])
def test_resnet50_loads_each_self_supervised_format(tmp_path, fmt):
    state = _torchvision_resnet50_state()
    path = str(tmp_path / f'{fmt}.pth')
    _write_ssl(path, fmt, state)
    _, detected, dropped = read_ssl_state(path)
    assert detected == fmt
    assert all('fc.' in k or 'encoder_k' in k or 'queue' in k or 'predictor' in k
               for k in dropped)
    model = create_backbone('resnet50', num_classes=20)
    assert load_pretrained_backbone(model, path) == fmt
    loaded = model.backbone.state_dict()
    for key, value in state.items():
        if not key.startswith('fc.'):
            assert torch.equal(loaded[key], value), key
    with torch.inference_mode():
        assert model.eval()(torch.rand(1, 3, 64, 64)).shape == (1, 20, 64, 64)


def test_resnet50_refuses_a_checkpoint_of_another_network(tmp_path):
    path = str(tmp_path / 'erfnet.pth')
    torch.save(create_backbone('erfnet', num_classes=20).state_dict(), path)
    with pytest.raises(CheckpointError, match='self-supervised ResNet-50 formats'):
        load_pretrained_backbone(create_backbone('resnet50', num_classes=20), path)
    trunk = {k: v for k, v in _torchvision_resnet50_state().items() if k != 'layer4.2.bn3.bias'}
    torch.save(trunk, path)
    with pytest.raises(CheckpointError, match='1 missing keys'):
        load_pretrained_backbone(create_backbone('resnet50', num_classes=20), path,
                                 'barlowtwins')


def test_isomax_plus_head_is_the_scaled_distance_to_normalised_prototypes():
    head = IsoMaxPlusHead(2, 2)
    with torch.no_grad():
        head.prototypes.copy_(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
        head.distance_scale.fill_(-2.0)  # the absolute value is used
    features = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)  # normalised: (0.6, 0.8)
    logits = head(features).flatten()
    expected = -2.0 * torch.tensor([(0.4 ** 2 + 0.8 ** 2) ** 0.5, (0.6 ** 2 + 0.2 ** 2) ** 0.5])
    assert torch.allclose(logits, expected, atol=1e-6)


def test_isomax_plus_head_on_the_axes_keeps_the_backbone_argmax():
    head = IsoMaxPlusHead(5, 5)
    head.keep_argmax()
    logits = torch.randn(2, 5, 6, 7) * 3
    assert torch.equal(head(logits).argmax(dim=1), logits.argmax(dim=1))


@pytest.mark.parametrize('name', ['enet', 'bisenetv1', 'bisenetv2', 'resnet50'])
def test_plain_state_dicts_of_other_backbones_are_recognised(tmp_path, name):
    path = str(tmp_path / f'{name}.pth')
    torch.save(create_backbone(name, num_classes=19).state_dict(), path)
    model, info = load_model(path)
    assert info.backbone == name and info.num_classes == 19 and info.void_channel is None


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


def test_the_input_size_rule_is_the_backbones_own():
    """ERFNet takes multiples of 8 only (it says so on its class); the others take any size,
    and the Detector holds each to its own rule."""
    import numpy as np
    from anomseg_ros.backbones import backbone_class, check_input_size
    from anomseg_ros.checkpoint import ModelInfo
    from anomseg_ros.errors import ConfigError
    from anomseg_ros.pipeline import Detector, make_scorer
    assert backbone_class('erfnet').input_multiple == 8
    with pytest.raises(ConfigError, match='multiples of 8 \\(erfnet downsamples 8x\\)'):
        check_input_size('erfnet', (50, 90))
    for name in ('enet', 'bisenetv1', 'bisenetv2', 'resnet50'):
        check_input_size(name, (50, 90))
    with pytest.raises(ConfigError, match='must be positive'):
        check_input_size('bisenetv1', (0, 90))
    info = ModelInfo(backbone='bisenetv1', num_classes=19, input_size_hw=(50, 90))
    model = create_backbone('bisenetv1', num_classes=19)
    detector = Detector(model, info, make_scorer('msp', info), device='cpu', precision='fp32')
    image = np.zeros((50, 90, 3), np.uint8)
    assert detector.predict(image).score_map.shape == (50, 90)


def test_a_plain_state_dict_is_read_as_the_backbone_whose_parameters_it_holds(tmp_path):
    """Two backbones that name their classifier alike (ResNet-50's classifier.weight, and a
    user's backbone as in docs/extending.md): the file is read as the one whose parameters are
    exactly its own, whichever was registered first."""
    from torch import nn
    from anomseg_ros.backbones import Backbone, register_backbone
    from anomseg_ros.backbones.registry import BACKBONES

    @register_backbone('a_tiny_fcn')
    class TinyFcn(Backbone):
        classifier_key, classifier_axis = 'classifier.weight', 0

        def __init__(self, num_classes: int = 19):
            super().__init__(num_classes)
            self.features = nn.Conv2d(3, 8, 3, padding=1)
            self.classifier = nn.Conv2d(8, num_classes, 1)

        def forward(self, x):
            return self.classifier(torch.relu(self.features(x)))
    try:
        tiny = tmp_path / 'tiny.pth'
        torch.save(TinyFcn(num_classes=19).state_dict(), tiny)
        resnet = tmp_path / 'resnet.pth'
        torch.save(create_backbone('resnet50', num_classes=19).state_dict(), resnet)
        assert load_model(str(tiny))[1].backbone == 'a_tiny_fcn'
        assert load_model(str(resnet))[1].backbone == 'resnet50'
    finally:
        BACKBONES._factories.pop('a_tiny_fcn', None)


def test_a_plain_state_dict_is_read_with_its_backbones_pretrained_cfg(tmp_path):
    """Normalisation and input size of public weights are the backbone's declaration
    (``pretrained_cfg``), not a table in checkpoint.py: a network whose public weights expect
    ImageNet-normalised 768x384 input is read so."""
    from torch import nn
    from anomseg_ros.backbones import Backbone, PretrainedCfg, register_backbone
    from anomseg_ros.backbones.registry import BACKBONES
    imagenet = PretrainedCfg(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                             input_size_hw=(384, 768))

    @register_backbone('an_imagenet_fcn')
    class ImageNetFcn(Backbone):
        classifier_key, classifier_axis = 'head.weight', 0
        pretrained_cfg = imagenet

        def __init__(self, num_classes: int = 19):
            super().__init__(num_classes)
            self.head = nn.Conv2d(3, num_classes, 1)

        def forward(self, x):
            return self.head(x)
    try:
        path = tmp_path / 'public.pth'
        torch.save(ImageNetFcn(num_classes=19).state_dict(), path)
        info = load_model(str(path))[1]
        assert (info.backbone, info.mean, info.std) == ('an_imagenet_fcn', imagenet.mean,
                                                        imagenet.std)
        assert info.input_size_hw == (384, 768)
        # ERFNet's is the public Cityscapes ERFNet's: RGB in [0, 1], 1024x512
        from anomseg_ros.backbones import pretrained_cfg
        assert pretrained_cfg('erfnet') == PretrainedCfg((0.0,) * 3, (1.0,) * 3, (512, 1024))
    finally:
        BACKBONES._factories.pop('an_imagenet_fcn', None)
