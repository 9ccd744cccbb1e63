"""SynBoost as a registered method: its scorers, its training phases and its ensemble stage.

``anomseg train-anomaly --method synboost`` trains, on a frozen segmentation checkpoint:

1. ``generator``: the label-to-image generator on the ground-truth maps of the inlier
   training images (L1 + feature matching on the image features);
2. ``dissimilarity``: the dissimilarity network on the training data generator's samples
   (``data.py``: label swaps and pasted void objects), class-balanced binary cross-entropy;
3. ``ensemble``: the weights of the dissimilarity probability, H, D and V, by grid search on
   validation tracks (``--ensemble-tracks``, never the test tracks).

The scorer ``synboost`` is the ensemble with the searched weights; ``synboost_net`` is the
dissimilarity network alone (Table 2's "w/o ensemble").
"""
import dataclasses
import os
from typing import Optional

import torch
import torch.nn.functional as F

from anomseg_ros.data.anomaly import open_anomaly_dataset
from anomseg_ros.data.images import resize_label
from anomseg_ros.errors import ConfigError
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.methods.base import Method, register_method
from anomseg_ros.methods.outliers import PASTE_SCALE, load_outliers, parse_scale, paste_outliers
from anomseg_ros.methods.synboost.data import choose_sources, make_targets, swap_labels
from anomseg_ros.methods.synboost.ensemble import (collect_pixels, combine, format_weights,
                                                   MAP_NAMES, parse_weights, search_weights)
from anomseg_ros.methods.synboost.model import (FEATURES, NUM_MAPS, state_hash, SynboostConfig,
                                                SynboostModel)
from anomseg_ros.options import option
from anomseg_ros.scoring.base import Scorer
from anomseg_ros.scoring.registry import register_scorer

UNSEARCHED_WEIGHTS = '1,0,0,0'  # the dissimilarity network alone, until the ensemble stage
V_QUANTILE = 0.99                # V is divided by this quantile of the first training batch


def synboost_maps(logits: torch.Tensor, num_inlier: Optional[int]) -> torch.Tensor:
    """The four maps ``(B,4,H,W)`` in [0, 1] from a SynBoost model's output."""
    if num_inlier is None or logits.shape[1] < num_inlier + NUM_MAPS:
        raise ConfigError('the SynBoost scores need a SynBoost checkpoint (segmentation outputs '
                          'and four maps); train one with anomseg train-anomaly --method '
                          'synboost')
    maps = logits[:, -NUM_MAPS:].float()
    return torch.cat([torch.sigmoid(maps[:, :1]), maps[:, 1:]], dim=1)


@register_scorer('synboost')
class SynboostScore(Scorer):
    """SynBoost's ensemble (paper 002 section 3.3): the weighted average of the dissimilarity
    probability, softmax entropy, softmax distance and perceptual difference."""

    method = 'synboost'

    def __init__(self, *, num_inlier_classes: Optional[int] = None,
                 weights: str = UNSEARCHED_WEIGHTS):
        super().__init__(num_inlier_classes=num_inlier_classes)
        self._weights = parse_weights(weights)
        self.weights = format_weights(self._weights)

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return combine(synboost_maps(logits, self.num_inlier_classes), self._weights)


@register_scorer('synboost_net')
class SynboostNetScore(Scorer):
    """The dissimilarity network's anomaly probability alone (no ensemble)."""

    method = 'synboost'

    def score(self, logits: torch.Tensor) -> torch.Tensor:
        return synboost_maps(logits, self.num_inlier_classes)[:, 0]


def balanced_bce(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the anomaly pixels and over the inlier pixels apart,
    then halved (anomalies are a few percent of the pixels); ``target`` 255 is ignored."""
    logit = logit.float()
    loss = logit.new_zeros(())
    for value, term in ((1, F.softplus(-logit)), (0, F.softplus(logit))):
        pixels = target == value
        if pixels.any():
            loss = loss + 0.5 * term[pixels].mean()
    return loss


def feature_matching(features_a, features_b) -> torch.Tensor:
    """Mean over layers of the mean absolute difference of two feature lists."""
    terms = [(a.float() - b.float()).abs().mean() for a, b in zip(features_a, features_b)]
    return torch.stack(terms).mean()


def reuse_generator(model: SynboostModel, path: str, info) -> None:
    """Load the generator of the SynBoost checkpoint ``path`` into ``model`` (the ablations of
    the dissimilarity network share one generator; another segmentation model of the same
    classes can reuse it too); it must render the same classes and be as wide."""
    try:
        saved = torch.load(path, map_location='cpu', weights_only=True)
        saved_info = saved['model_info']
        state = saved['model_state']
    except FileNotFoundError:
        raise ConfigError(f'`generator_from` {path!r} does not exist') from None
    except Exception as exc:  # not a checkpoint, or not ours
        raise ConfigError(f'`generator_from` {path!r} is not a SynBoost checkpoint '
                          f'({type(exc).__name__})') from None
    params = saved_info.get('method_params', {})
    if saved_info.get('method') != 'synboost':
        raise ConfigError(f'`generator_from` {path!r} is not a SynBoost checkpoint')
    if saved_info.get('class_names') != list(info.class_names):
        raise ConfigError(f'the generator in {path!r} renders other classes than '
                          f'`checkpoint` predicts; give a SynBoost checkpoint of the same '
                          f'classes')
    if params.get('base_hash') != info.method_params['base_hash']:
        # a generator renders labels, whichever model predicts them: usable, and recorded
        print(f'note: the generator in {path!r} was trained beside another segmentation model '
              f'(its feature-matching loss used that model\'s encoder)', flush=True)
    info.method_params['generator_from'] = {'path': os.path.abspath(path),
                                            'base_hash': params.get('base_hash', '')}
    width = params.get('network', {}).get('generator_channels')
    if width != model.config.generator_channels:
        raise ConfigError(f'the generator in {path!r} is {width} channels wide; give '
                          f'`generator_channels` {width}')
    model.generator.load_state_dict({k[len('generator.'):]: v for k, v in state.items()
                                     if k.startswith('generator.')})


@dataclasses.dataclass
class SynboostOptions:
    """SynBoost's own training options (the run's are ``AnomalyTrainConfig``'s: its
    ``epochs`` and ``lr`` are the dissimilarity network's, its ``outliers`` the void
    source's objects)."""

    generator_epochs: int = option(10, 'epochs of the label-to-image generator (default '
                                   '%(default)s; 0 with `generator_from`)')
    generator_lr: float = option(2e-4, 'the generator\'s learning rate (default %(default)s)')
    generator_from: Optional[str] = option(
        None, 'start from the generator of this SynBoost checkpoint (same segmentation model); '
        'with 0 generator epochs it is used as it is, e.g. for ablations of the dissimilarity '
        'network', metavar='CKPT')
    generator_channels: int = option(32, 'generator width c (4c channels at 1/8 resolution; '
                                     'default %(default)s, the light variant 16)')
    dissimilarity_width: int = option(32, 'width of the dissimilarity network (default '
                                      '%(default)s)')
    perceptual_weight: float = option(1.0, 'weight of the feature-matching loss of the '
                                      'generator (default %(default)s)')
    features: str = option('segmenter', 'image features of V and of the dissimilarity '
                           'encoders: the segmentation model\'s encoder (default) or an ImageNet '
                           'VGG-16 (vgg16)', choices=FEATURES)
    vgg16: Optional[str] = option(None, 'a torchvision vgg16 state dict (vgg16-397923af.pth), '
                                  'for `features` vgg16', metavar='PATH')
    void_share: float = option(0.5, 'share of training images whose anomaly is a pasted void '
                               'object; the rest get label swaps (0: label swaps only, an '
                               'ablation)')
    uncertainty: bool = option(True, 'the uncertainty maps as inputs of the dissimilarity '
                               'network (off: an ablation)')
    ensemble_tracks: Optional[str] = option(None, 'validation anomaly tracks for the ensemble '
                                            'weights (not the test tracks)',
                                            metavar='DIR[,DIR]')
    ensemble_step: float = option(0.1, 'grid step of the ensemble weights (default '
                                  '%(default)s)')
    ensemble_limit: int = option(0, 'first N images of each ensemble track (default all)',
                                 metavar='N')

    def network(self) -> SynboostConfig:
        """The network these options build (which refuses widths and features it cannot)."""
        return SynboostConfig(generator_channels=self.generator_channels,
                              dissimilarity_width=self.dissimilarity_width,
                              uncertainty=self.uncertainty, features=self.features)


@register_method('synboost')
class SynBoost(Method):
    """SynBoost (paper 002) as a method; see the module docstring."""

    scorer = 'synboost'
    paper = '002'
    default_lr = 1e-4           # the dissimilarity network's
    needs_outliers = True       # the void source's objects (unless --void-share 0)
    base_num_classes = None     # keeps every output of the segmentation model
    extra_outputs = NUM_MAPS    # the dissimilarity logit and its three inputs
    finish_stage = 'ensemble'
    not_exportable = ('its feature extractor stops the segmentation model early through forward '
                      'hooks and it keeps the synthesised image for the resynthesis topic')

    def build_model(self, info, build_base):
        base_info = dataclasses.replace(info, method='', method_params={},
                                        num_classes=info.num_classes - NUM_MAPS)
        return SynboostModel(build_base(base_info), num_inlier=info.num_inlier_classes,
                             mean=info.mean, std=info.std,
                             config=SynboostConfig(**info.method_params.get('network', {})))

    Options = SynboostOptions

    def check(self, config, options) -> None:
        stage = config.stage
        if stage in ('all', 'dissimilarity') and options.void_share > 0 and not config.outliers:
            raise ConfigError('SynBoost\'s void source pastes outlier objects into the training '
                              'images: give `outliers`, a folder of RGBA cut-outs (e.g. anomseg '
                              'synth\'s outliers/), or a `void_share` of 0 for label swaps only')
        if not 0 <= options.void_share <= 1:
            raise ConfigError(f'`void_share` is a share of images, 0 to 1; got '
                              f'{options.void_share}')
        if stage in ('all', 'ensemble') and not options.ensemble_tracks:
            raise ConfigError('SynBoost chooses its ensemble weights on validation tracks: give '
                              '`ensemble_tracks` DIR[,DIR] (anomaly tracks that are not your test '
                              'tracks)')
        if options.features == 'vgg16' and not options.vgg16 and not config.resume and \
                stage in ('all', 'generator'):
            raise ConfigError('`features` vgg16 needs `vgg16`, the path of a torchvision vgg16 '
                              'state dict (no weights are downloaded)')
        options.network()
        if options.generator_epochs == 0 and not options.generator_from and \
                stage in ('all', 'generator'):
            raise ConfigError('`generator_epochs` 0 trains no generator: give `generator_from`, a '
                              'SynBoost checkpoint whose generator to take')

    def prepare(self, base, base_info, config, options):
        network = options.network()
        model = SynboostModel(base, num_inlier=base_info.num_inlier_classes,
                              mean=base_info.mean, std=base_info.std, config=network,
                              vgg16_path=options.vgg16 or None)
        info = dataclasses.replace(
            base_info, num_classes=base_info.num_classes + NUM_MAPS, method=self.name,
            source='', method_params={'network': dataclasses.asdict(network),
                                      'weights': UNSEARCHED_WEIGHTS,
                                      'base_hash': state_hash(base),
                                      'void_share': options.void_share})
        if options.generator_from:
            reuse_generator(model, options.generator_from, info)
        trainable = sum(p.numel() for name in ('generator', 'dissimilarity')
                        for p in getattr(model, name).parameters())
        return model, info, trainable

    def phases(self, config, options):
        phases = [('dissimilarity', config.epochs, config.lr)]
        if options.generator_epochs or not options.generator_from:
            phases.insert(0, ('generator', options.generator_epochs, options.generator_lr))
        return phases

    def start_phase(self, model, name, *, fresh=True):
        if name == 'dissimilarity' and fresh:
            model.v_scale.fill_(1.0)  # V's scale is measured again on the first batch
        return model.set_part(name)

    def training_state(self, config, options, info, generator):
        outliers = (load_outliers(config.outliers)
                    if config.outliers and options.void_share > 0 else [])
        return {'generator': generator, 'outliers': outliers, 'void_share': options.void_share,
                'scale': parse_scale(config.paste_scale),
                'perceptual_weight': options.perceptual_weight,
                'num_inlier': info.num_inlier_classes,
                'mean': torch.tensor(info.mean).view(3, 1, 1),
                'std': torch.tensor(info.std).view(3, 1, 1)}

    def train_step(self, model, images, labels, state, step):
        if model.part == 'generator':
            return self._generator_step(model, images, labels, state)
        return self._dissimilarity_step(model, images, labels, state)

    @staticmethod
    def _generator_step(model, images, labels, state):
        synthesis = model.synthesise(labels)
        with torch.no_grad():
            target = model.image_features.extract(images)
        l1 = (synthesis.float() - images.float()).abs().mean()
        matching = feature_matching(model.image_features.extract(synthesis), target)
        return l1 + state['perceptual_weight'] * matching, {'l1': l1.detach(),
                                                            'features': matching.detach()}

    @staticmethod
    def training_sample(images, labels, state):
        """The training data generator on one batch (``data.py``): per image a source, the
        images with the void objects pasted in (in place), the semantic map the network is to
        see (-1 where it is the prediction) and the targets."""
        batch = images.shape[0]
        sources = choose_sources(batch, state['generator'], void_share=state['void_share'])
        semantic = torch.full_like(labels, -1, dtype=torch.long)  # -1: the prediction
        anomalies = torch.zeros_like(labels, dtype=torch.bool)
        void = [i for i, source in enumerate(sources) if source == 'void']
        if void and not state['outliers']:
            raise ConfigError('the void source needs outlier objects (`outliers`)')
        if void:
            picked_images, picked_labels = images[void].clone(), labels[void].clone()
            anomalies[void] = paste_outliers(
                picked_images, picked_labels, state['outliers'], label=VOID_LABEL,
                mean=state['mean'], std=state['std'], generator=state['generator'],
                probability=1.0, scale=state.get('scale', PASTE_SCALE))
            images[void] = picked_images
        for i in range(batch):
            if i not in void:
                semantic[i], anomalies[i] = swap_labels(labels[i], state['num_inlier'],
                                                        state['generator'])
        return {'sources': sources, 'semantic': semantic,
                'target': make_targets(labels, anomalies)}

    def _dissimilarity_step(self, model, images, labels, state):
        sample = self.training_sample(images, labels, state)
        parts = model.dissimilarity_inputs(images, sample['semantic'])
        if float(model.v_scale) == 1.0:  # the first step: fix V's normalisation for good
            model.v_scale.fill_(float(torch.quantile(parts['raw_v'].float().flatten()[::7],
                                                     V_QUANTILE)))
            parts['maps'][:, 2] = (parts['raw_v'] / model.v_scale).clamp(0, 1)
        target = sample['target']
        loss = balanced_bce(model.dissimilarity_logit(parts)[:, 0], target)
        return loss, {'bce': loss.detach(), 'anomaly_share': (target == 1).float().mean()}

    def finish(self, model, info, config, options, logits):
        """The ensemble stage: AuPRC of every weight vector on the grid over the pixels of
        ``options.ensemble_tracks``; the best goes into ``info.method_params['weights']``."""
        model.keep_synthesis = False
        tracks = [t for t in str(options.ensemble_tracks).split(',') if t]

        def pairs():
            for track in tracks:
                dataset = open_anomaly_dataset(track)
                for index, (_, image, label) in enumerate(dataset):
                    if options.ensemble_limit and index >= options.ensemble_limit:
                        break
                    maps = synboost_maps(logits([image]), info.num_inlier_classes)[0]
                    yield maps, resize_label(label, (maps.shape[-1], maps.shape[-2]))

        pixels, labels = collect_pixels(pairs(), seed=config.seed)
        weights, best, rows = search_weights(pixels, labels, step=options.ensemble_step)
        singles = {name: next(r for r in rows if r['weights'][k] == 1.0)
                   for k, name in enumerate(MAP_NAMES)}
        info.method_params['weights'] = format_weights(weights)
        record = {'tracks': tracks, 'weights': format_weights(weights), 'step':
                  options.ensemble_step, 'pixels': int(len(labels)),
                  'anomaly_pixels': int((labels == 1).sum()), **best,
                  'alone': {name: {'auprc': r['auprc'], 'fpr95': r['fpr95']}
                            for name, r in singles.items()}}
        print(f'ensemble weights ({", ".join(MAP_NAMES)}): {record["weights"]}, AuPRC '
              f'{100 * best["auprc"]:.2f} FPR95 {100 * best["fpr95"]:.2f} on '
              f'{len(labels):,} validation pixels; alone: ' + ', '.join(
                  f'{n} {100 * r["auprc"]:.2f}' for n, r in record['alone'].items()),
              flush=True)
        return {'ensemble': record}
