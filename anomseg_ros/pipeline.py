"""The detector pipeline: RGB image in, semantic labels, anomaly scores and obstacle mask out.

resize to the model input size -> normalise -> forward (CUDA when available) -> score -> resize
back to the input resolution -> threshold. ROS-free; the node and the offline tools share it.
"""
import dataclasses
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from anomseg_ros.backbones import check_input_size
from anomseg_ros.checkpoint import ModelInfo
from anomseg_ros.errors import ConfigError, first_line, NonFiniteScores
from anomseg_ros.labels import VOID_LABEL
from anomseg_ros.obstacles import drivable_region, MASK_REGIONS
from anomseg_ros.precision import (autocast, INT8, keep_input_layers_float32, precision_name,
                                   resolve_precision, to_fast_layout)
from anomseg_ros.preprocessing import (check_rgb, to_network_images,  # noqa: F401 (API)
                                       to_network_input)
from anomseg_ros.runtimes.registry import (auto_runtime, FALLBACK, file_runtime,
                                           get_runtime, int8_runtimes, LoadRequest,
                                           runtime_choices)
from anomseg_ros.scoring import (create_scorer, Scorer, scorer_class, scorer_method,
                                 scorer_params)

DEVICES = ('auto', 'cpu', 'cuda')
DEFAULT_THRESHOLD = 0.5  # for a scorer the checkpoint has no calibrated threshold for
# precision int8's accuracy control (points of runtimes.export._quantize's label-free FPR95):
# off by default. With the public ERFNet on RoadAnomaly21 / fs_static, plain int8 (decoder in
# float) stayed within 0.92 / 1.94 points of float32, while accuracy control at 5 points moved
# RoadAnomaly21's FPR95 by 2.5 (docs/speed.md): the label-free measure does not track it there.
DEFAULT_INT8_MAX_DROP = 0.0


def parse_threshold(value) -> Union[str, float]:
    """``"auto"`` or a finite number (a string from a command line or launch file too)."""
    if isinstance(value, str) and value.strip().lower() == 'auto':
        return 'auto'
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float('nan')
    if not np.isfinite(number) or isinstance(value, bool):
        raise ConfigError(f'threshold must be "auto" (the checkpoint\'s calibrated one for the '
                          f'scorer) or a finite number, got {value!r}')
    return number


@dataclasses.dataclass(frozen=True)
class Settings:
    """What turns logits into a score and a mask: the scorer, its threshold and where that
    came from. A ``Detector`` swaps its whole ``Settings`` at once and each batch reads it
    once, so no frame is ever scored by one scorer and thresholded with another's threshold."""

    scorer: Scorer
    threshold: float
    threshold_setting: object  # "auto" or the number given
    threshold_source: str
    mask_region: str = 'all'   # or 'drivable': the mask only on the road (obstacles.py)

    @property
    def uncalibrated(self) -> str:
        """'' when the threshold was given or calibrated; else the warning to say loudly: the
        default does not fit every scorer's scale (maxlogit's and energy's scores are negative,
        so 0.5 flags nothing)."""
        if not self.threshold_source.startswith('default'):
            return ''
        return (f'threshold auto: the checkpoint has no calibrated threshold for '
                f'{self.scorer.name}, so {self.threshold:g} is used, which is not on every '
                f'scorer\'s scale (maxlogit and energy scores are negative: the mask stays '
                f'empty); set one without labels with anomseg calibrate --weights CKPT '
                f'--thresholds --unlabeled FRAMES --in-place, or give a number')

    def describe(self) -> dict:
        """The settings as plain values (for logs, /diagnostics and result files)."""
        described = {'scorer': self.scorer.name, 'threshold': float(self.threshold),
                     'threshold_setting': str(self.threshold_setting),
                     'threshold_source': self.threshold_source,
                     'mask_region': self.mask_region}
        temperature = getattr(self.scorer, 'temperature', None)
        if temperature is not None:
            described['temperature'] = float(temperature)
        return described


@dataclasses.dataclass
class Detection:
    """Outputs for one image, all at the input's resolution."""

    labels: np.ndarray      # (H,W) uint8 trainIds, 255 where void
    score_map: np.ndarray   # (H,W) float32, higher = more anomalous
    mask: np.ndarray        # (H,W) bool, score_map >= settings.threshold
    # (H,W,3) uint8: the image a re-synthesis method (SynBoost) rendered from the labels, when
    # the detector was asked for it (Detector.set_resynthesis)
    resynthesis: Optional[np.ndarray] = None
    settings: Optional[Settings] = None  # the scorer and threshold that made score and mask
    # milliseconds of the batch's stages: forward (preprocess and network), score (scorer and
    # labels), resize (back to the image's size, and the mask)
    timings_ms: Optional[dict] = None

    def check_finite(self, what: str = 'the frame') -> None:
        """Raise ``NonFiniteScores`` when any score is NaN or infinite: its mask decides
        nothing and must not be published or written."""
        finite = np.isfinite(self.score_map)
        if not finite.all():
            scorer = self.settings.scorer.name if self.settings else 'the scorer'
            raise NonFiniteScores(f'{what}: {int(finite.size - finite.sum())} of {finite.size} '
                                  f'anomaly scores are NaN or infinite ({scorer}); no mask is '
                                  f'made from them')


def resolve_device(device: str) -> torch.device:
    if device not in DEVICES:
        raise ConfigError(f'device must be one of {", ".join(DEVICES)}, got {device!r}')
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('device "cuda" was asked for but PyTorch sees no CUDA GPU; '
                          'use device "auto" or "cpu"')
    return torch.device(device)


class Detector:
    """Segments and scores RGB images with one model and one scorer.

    ``input_size_hw`` is the size the network sees (default: the checkpoint's); outputs are
    resized back to each image's own size. ``precision`` is the forward pass's (``auto``:
    bf16 on CPUs with AMX / AVX512-BF16, fp16 on CUDA, fp32 elsewhere; see ``precision.py``);
    the logits the scorers see are float32 whatever it is.
    """

    def __init__(self, model: torch.nn.Module, info: ModelInfo, scorer: Scorer, *,
                 threshold='auto', device: str = 'auto',
                 input_size_hw: Optional[Tuple[int, int]] = None, precision: str = 'auto'):
        self.info = info
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.runtime = getattr(model, 'runtime', FALLBACK)  # the name of what runs it
        runs = get_runtime(self.runtime)
        if runs.own_precision:
            self.dtype = torch.float32  # the file's own types
        self.model = model.to(self.device).eval()
        self.channels_last = runs.pytorch_module
        if self.channels_last:
            self.model = to_fast_layout(self.model)
            if self.dtype != torch.float32:
                keep_input_layers_float32(self.model)
        height, width = input_size_hw or info.input_size_hw
        self.input_size_hw: Tuple[int, int] = (int(height), int(width))
        check_input_size(info.backbone, self.input_size_hw)
        self.settings = self._settings(scorer, threshold)
        self._mean = torch.tensor(info.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(info.std, device=self.device).view(1, 3, 1, 1)
        self.resynthesis = False
        self.runtime_reason = 'given a model'  # from_checkpoint says which and why
        self.notes: List[str] = []  # warnings of loading it (an OpenVINO cache rebuilt, ...)

    @property
    def can_resynthesise(self) -> bool:
        """Whether the model renders an image from its labels (SynBoost checkpoints do)."""
        return hasattr(self.model, 'keep_synthesis')

    def set_resynthesis(self, enabled: bool) -> None:
        """Put the re-synthesised image in each ``Detection`` (``resynthesis``)."""
        if enabled and not self.can_resynthesise:
            raise ConfigError(f'{self.info.source or "this model"} does not re-synthesise the '
                              f'image (a SynBoost checkpoint does: anomseg train-anomaly '
                              f'--method synboost); switch the resynthesis output off')
        self.resynthesis = bool(enabled)
        if self.can_resynthesise:  # a SynBoost model's own switch
            setattr(self.model, 'keep_synthesis', self.resynthesis)

    @classmethod
    def from_checkpoint(cls, weights: str, *, backbone: Optional[str] = None,
                        scorer: str = 'msp', temperature: Optional[float] = None,
                        runtime: str = 'auto', calibration: str = '',
                        int8_max_drop: Optional[float] = DEFAULT_INT8_MAX_DROP,
                        **kwargs) -> 'Detector':
        """A Detector for a PyTorch checkpoint, or an exported ``.onnx`` (ONNX Runtime) or
        ``.xml`` (OpenVINO IR, compiled for the input size and precision).

        ``runtime`` runs a PyTorch checkpoint in PyTorch (``torch``) or converts it to OpenVINO
        once (``openvino``, cached on disk). ``auto`` takes OpenVINO on the CPU where it is
        installed: it keeps the scores and is the faster CPU path (bench/bench_precision.py,
        bench/bench_node.py); the first start of a checkpoint at an input size converts and
        compiles it (about 10 s at 1024x512 on two cores), later ones read the cache. It
        stays with PyTorch on a GPU, for random weights, and for a model OpenVINO cannot convert
        or compile (ENet, SynBoost). ``runtime_reason`` says why the runtime was taken.

        ``precision="int8"`` quantizes the checkpoint for OpenVINO with NNCF once, on the
        frames of ``calibration`` (a folder of images or a rosbag2 of the camera; default
        ``"synthetic"`` for a model trained on the synthetic world, required for any other),
        under NNCF's accuracy control with ``int8_max_drop`` points (0 or None: without),
        and caches it keyed by the checkpoint, the input size and the calibration frames; the
        layers left in float run in ``auto``'s precision. ``notes`` say which those are.
        """
        if runtime not in runtime_choices():
            raise ConfigError(f'runtime must be one of {", ".join(runtime_choices())}, got '
                              f'{runtime!r}')
        asked_device = kwargs.pop('device', 'auto')
        precision = kwargs.pop('precision', 'auto')
        int8 = precision == INT8
        runs = get_runtime(runtime) if runtime != 'auto' else None
        reason = 'asked for'
        own = file_runtime(weights)  # an exported file picks its own runtime
        if int8:
            quantizers = int8_runtimes()
            if own or (runs and runs not in quantizers) or (asked_device != 'auto' and not any(
                    asked_device in r.devices for r in quantizers)):
                names = ', '.join(r.name for r in quantizers) or 'none installed'
                raise ConfigError(f'precision int8 quantizes a PyTorch checkpoint for '
                                  f'{names} on the CPU (runtime auto or {names}, device auto or '
                                  f'cpu); an exported file carries its own precision: give it '
                                  f'with precision auto')
            runs = runs or quantizers[0]
            reason = f'precision int8: {runs.title} quantizes it'
            precision = 'auto'  # of the layers int8 leaves in float
        elif own:
            runs, reason = own, f'the {os.path.splitext(weights)[1]} file\'s own'
        elif runs is None:
            runs, reason = auto_runtime(weights, resolve_device(asked_device))
        device = _device_for(runs, weights, asked_device)
        request = LoadRequest(weights, device,
                              precision_name(resolve_precision(precision, device)),
                              input_size_hw=kwargs.get('input_size_hw'), backbone=backbone,
                              int8={'calibration': calibration,
                                    'max_drop': float(int8_max_drop) if int8_max_drop else None}
                              if int8 else None)
        if request.precision not in runs.precisions and not runs.own_precision:
            raise ConfigError(f'{runs.title} runs {", ".join(runs.precisions)}, not '
                              f'{request.precision}: give one of those as precision')
        fallback = get_runtime(FALLBACK)
        try:
            loaded = runs.load(request)
        except Exception as exc:  # noqa: B902 - a model a faster runtime cannot run
            if runtime != 'auto' or own or int8 or runs is fallback:
                raise
            # PyTorch then runs it, or raises the same error for a file it cannot read
            reason = (f'auto: {runs.title} cannot run it ({type(exc).__name__}: '
                      f'{first_line(exc, limit=300, empty="")})')
            runs, device = fallback, resolve_device(asked_device)
            request = dataclasses.replace(
                request, device=device,
                precision=precision_name(resolve_precision(precision, device)))
            loaded = runs.load(request)
        model, info = loaded.model, loaded.info
        kwargs.update(device=device.type, precision=request.precision)
        detector = cls(model, info, make_scorer(scorer, info, temperature=temperature),
                       **kwargs)
        detector.runtime_reason = reason
        detector.notes = [note for note in loaded.notes if note]
        detector.quantized = int8
        return detector

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 images to a normalised ``(B,3,h,w)`` batch at the network's input size
        (``preprocessing.to_network_input``), or for a model that normalises in its own graph
        (``takes_images``: OpenVINO) a uint8 ``(B,h,w,3)`` one (``to_network_images``)."""
        if getattr(self.model, 'takes_images', False):
            return to_network_images(images, self.input_size_hw)
        return to_network_input(images, self.input_size_hw, self._mean, self._std,
                                device=self.device)

    quantized = False  # an int8 model (from_checkpoint with precision int8)

    @property
    def precision_name(self) -> str:
        """``int8`` for a quantized model, else the forward pass's dtype (``bf16``, ...)."""
        return INT8 if self.quantized else precision_name(self.dtype)

    @torch.inference_mode()
    def logits(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Raw logits ``(B,C,h,w)`` at the network's input size, float32."""
        return self._forward(images)[0]

    def _forward(self, images: Sequence[np.ndarray]
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The logits, and the argmax over ``info.label_channels`` where the model computed
        it in its own graph in the same call (``last_labels``: OpenVINO's TopK), else None."""
        batch = self.preprocess(images)
        with autocast(self.device, self.dtype):
            logits = self.model(to_fast_layout(batch) if self.channels_last else batch).float()
        labels = getattr(self.model, 'last_labels', None)
        if labels is not None:
            setattr(self.model, 'last_labels', None)  # this call's, taken once
        return logits, labels

    @torch.inference_mode()
    def semantic(self, logits: torch.Tensor,
                 indices: Optional[torch.Tensor] = None) -> torch.Tensor:
        """trainIds ``(B,h,w)``: argmax over the inlier classes and the void output, void (255)
        where the void output wins; other outputs (PEBAL's abstention class, SLEEG's OoD head)
        take no part. ``indices``: that argmax, where the model's graph computed it."""
        info = self.info
        if indices is None:  # max(dim=1) is 4x faster than argmax on the CPU
            indices = logits[:, :info.label_channels].max(dim=1).indices
        return indices.masked_fill(indices >= info.num_inlier_classes,
                                   VOID_LABEL).to(torch.uint8)

    @torch.inference_mode()
    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Detection]:
        """Run the whole pipeline on a batch; images may differ in size."""
        if not images:
            return []
        settings = self.settings  # one snapshot for the whole batch (see Settings)
        started = time.perf_counter()
        logits, indices = self._forward(images)
        forward = time.perf_counter()
        scores = settings.scorer(logits)
        labels = self.semantic(logits, indices)
        scored = time.perf_counter()
        synthesis = self._synthesis(len(images))
        detections = []
        for index, (image, score, label) in enumerate(zip(images, scores, labels)):
            size_hw = image.shape[:2]
            rendered: Optional[torch.Tensor] = \
                None if synthesis is None else synthesis[index:index + 1]
            if tuple(score.shape) != tuple(size_hw):
                score = F.interpolate(score[None, None], size=size_hw, mode='bilinear',
                                      align_corners=False)[0, 0]
                label = F.interpolate(label[None, None].float(), size=size_hw,
                                      mode='nearest')[0, 0].to(torch.uint8)
                if rendered is not None:
                    rendered = F.interpolate(rendered, size=size_hw, mode='bilinear',
                                             align_corners=False)
            score_np = score.float().cpu().numpy()
            label_np = label.cpu().numpy()
            mask = score_np >= settings.threshold
            if settings.mask_region == 'drivable':
                mask &= drivable_region(label_np)
            picture = None if rendered is None else \
                (rendered[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(
                    torch.uint8).cpu().numpy()
            detections.append(Detection(labels=label_np, score_map=score_np, mask=mask,
                                        resynthesis=picture, settings=settings))
        timings = {'forward': 1e3 * (forward - started), 'score': 1e3 * (scored - forward),
                   'resize': 1e3 * (time.perf_counter() - scored)}
        for detection in detections:
            detection.timings_ms = timings
        return detections

    def _synthesis(self, count: int) -> Optional[torch.Tensor]:
        """The model's last re-synthesised batch as RGB in [0, 1], when asked for."""
        last = getattr(self.model, 'last_synthesis', None)
        if not self.resynthesis or last is None:
            return None
        return last.float()[:count] * self._std + self._mean

    def predict(self, image: np.ndarray) -> Detection:
        return self.predict_batch([image])[0]

    # -- settings: read through one snapshot, changed by swapping it whole --------------------
    @property
    def scorer(self) -> Scorer:
        return self.settings.scorer

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    @property
    def threshold_setting(self):
        return self.settings.threshold_setting

    @property
    def threshold_source(self) -> str:
        return self.settings.threshold_source

    def configure(self, *, scorer: Optional[str] = None, temperature: Optional[float] = None,
                  threshold=None, mask_region: Optional[str] = None) -> Settings:
        """Change the scorer (with ``temperature``) and / or the threshold in one step: the
        next frame sees all of the change and the current one none of it. A threshold of
        ``"auto"`` follows the scorer; a number given before is kept. Returns the new
        settings; on a refused value the old ones stay."""
        current = self.settings
        new_scorer = current.scorer if scorer is None else make_scorer(
            scorer, self.info, temperature=temperature)
        setting = current.threshold_setting if threshold is None else threshold
        region = current.mask_region if mask_region is None else mask_region
        if region not in MASK_REGIONS:
            raise ConfigError(f'mask_region must be one of {", ".join(MASK_REGIONS)}, got '
                              f'{region!r}')
        self.settings = dataclasses.replace(self._settings(new_scorer, setting),
                                            mask_region=region)
        return self.settings

    def settings_for(self, scorer: str, *, temperature: Optional[float] = None,
                     threshold='auto') -> Settings:
        """The settings ``configure`` would make for ``scorer``, without changing this
        detector's (several scorers compared on one forward pass, each at its own threshold)."""
        built = make_scorer(scorer, self.info, temperature=temperature)
        return dataclasses.replace(self._settings(built, threshold),
                                   mask_region=self.settings.mask_region)

    def set_scorer(self, name: str, *, temperature: Optional[float] = None) -> None:
        self.configure(scorer=name, temperature=temperature)

    def set_threshold(self, threshold) -> None:
        """A number, or ``"auto"``: the threshold ``anomseg calibrate --thresholds`` wrote into
        the checkpoint for the current scorer, else ``DEFAULT_THRESHOLD``
        (``threshold_source`` says which)."""
        self.configure(threshold=threshold)

    def _settings(self, scorer: Scorer, threshold) -> Settings:
        setting = parse_threshold(threshold)
        if setting != 'auto':
            value, source = scorer.check_threshold(float(setting)), 'given'
        elif scorer.name in self.info.thresholds:
            value, source = float(self.info.thresholds[scorer.name]), 'calibrated'
        else:
            value = DEFAULT_THRESHOLD
            source = f'default: no calibrated threshold for {scorer.name} in the checkpoint'
        return Settings(scorer=scorer, threshold=float(value), threshold_setting=setting,
                        threshold_source=source)


def _device_for(runs, weights: str, asked: str) -> torch.device:
    """The device ``runs`` runs ``weights`` on: the asked one, or for ``auto`` the machine's
    when it serves it, else its own first (ONNX Runtime and OpenVINO: the CPU)."""
    device = resolve_device(asked)
    if runs.serves(device):
        return device
    if asked == 'auto':
        return torch.device(runs.devices[0])
    raise ConfigError(f'{weights} runs on {" or ".join(runs.devices)} ({runs.title}); use '
                      f'device {runs.devices[0]}, or the PyTorch checkpoint with runtime '
                      f'{FALLBACK}')


def make_scorer(name: str, info: ModelInfo, *, temperature: Optional[float] = None) -> Scorer:
    """Build scorer ``name`` for a model described by ``info``.

    ``temperature`` goes to every scorer that takes one. Without it, a scorer that declares
    ``calibrated_temperature`` (``msp``) uses the checkpoint's calibrated temperature (written
    by ``anomseg calibrate``) and the others keep their documented defaults (``temperature``:
    T = 1.5, paper 000). ``NAME+REFINEMENT`` (``maxlogit+boundary``, ``msp+smooth``) is that
    score refined (``scoring.refine``). A learned method's score
    is refused on a checkpoint that method did not train, and takes the settings it trained
    with. ``scorer.sources`` says where each setting came from.
    """
    from anomseg_ros.scoring.refine import Refined, split_name
    base, refinement = split_name(name)
    if refinement:  # "maxlogit+boundary": the score of maxlogit, refined
        return Refined(make_scorer(base, info, temperature=temperature), refinement)
    params: Dict[str, Any] = {}
    sources: Dict[str, str] = {}
    accepted = scorer_params(name)
    if 'num_inlier_classes' in accepted:
        params['num_inlier_classes'] = info.num_inlier_classes
    if 'class_stats' in accepted:
        params['class_stats'] = info.class_stats
        sources['class_stats'] = info.class_stats.get('source', 'checkpoint')
    if 'void_channel' in accepted:
        params['void_channel'] = info.void_channel
        sources['void_channel'] = 'checkpoint'
        if info.void_channel is None:
            raise ConfigError(f'scorer {name!r} needs a model with a void output; '
                              f'{info.source or "this model"} has {info.num_classes} outputs '
                              f'and no void channel')
    method = scorer_method(name)
    if method and info.method != method:
        trained = f'trained with {info.method}' if info.method else 'a plain segmentation model'
        raise ConfigError(f'scorer {name!r} is the score of a {method.upper()}-trained model and '
                          f'means nothing on {info.source or "this model"} ({trained}); train '
                          f'one with anomseg train-anomaly --method {method}, or use a post-hoc '
                          f'scorer (msp, maxlogit, maxentropy, energy)')
    if method:  # a learned method's own scorer takes the settings it trained with
        for key, value in info.method_params.items():
            if key in accepted:
                params[key], sources[key] = value, f'{method} training'
    if 'temperature' in accepted:
        if temperature is not None:
            params['temperature'], sources['temperature'] = temperature, 'given'
        elif scorer_class(name).calibrated_temperature and info.temperature != 1.0:
            params['temperature'] = info.temperature
            sources['temperature'] = 'checkpoint calibration'
    scorer = create_scorer(name, **params)
    scorer.sources = sources
    return scorer
