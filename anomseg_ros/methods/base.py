"""The method contract: a learned anomaly score on top of a trained segmentation model.

A ``Method`` owns what is method-specific, so the checkpoint loader, the pipeline and the
training loop need no name checks:

- ``Options``: a dataclass of the method's own training options, each field with its default
  and help (``anomseg_ros.options.option``); the command line makes its flags from them and
  checkpoints keep them. Every hook below gets the run (``AnomalyTrainConfig``: epochs, lr,
  outliers, ...) as ``config`` and an ``Options`` as ``options``;
- ``check(config, options)``: refuse what it cannot train with, before any data is read;
- ``build_model(info, build_base)``: the (untrained) network a checkpoint of this method holds,
  from its ``ModelInfo`` (``build_base`` builds the plain segmentation model of an info);
- ``prepare(base, base_info, config, options)``: that network made from a trained
  segmentation model, with what is to train unfrozen, and the ``ModelInfo`` it will be saved
  with;
- ``scorer``: the registered scorer that reads its outputs, which takes the settings it was
  trained with from ``info.method_params``;
- ``training_state(config, options, info, generator)`` and ``train_step(model, images, labels,
  state, step)``: one optimisation step's loss and the terms to log;
- ``phases(config, options)``: the training phases in order, each ``(name, epochs, lr)``
  with its own optimiser (one, ``train``, by default; SynBoost trains its generator, then its
  dissimilarity network), ``start_phase`` unfreezing what a phase trains; and ``finish``: a
  last step without gradients (SynBoost's ensemble grid search), named ``finish_stage``.

Methods are registered by name (``register_method``) like backbones and scorers.
"""
import dataclasses
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from anomseg_ros.registry import Registry


@dataclasses.dataclass
class NoOptions:
    """The options of a method that has none of its own."""


class Method:
    """Base class of the learned anomaly methods (see the module docstring)."""

    Options: type = NoOptions  # a dataclass of the method's own training options

    name = ''
    scorer = ''            # the scorer that reads this method's outputs
    paper = ''             # the paper it follows
    default_lr = 1e-3
    needs_outliers = False  # trains on outlier cut-outs (the run's outliers)
    # outputs of the segmentation model it builds on (PEBAL: the 19 classes, void dropped);
    # None keeps them all
    base_num_classes = None
    # outputs it adds after the classes and the void output (PEBAL's abstention: 1)
    extra_outputs = 0
    # why its checkpoints run in PyTorch only ('' = they export to ONNX / OpenVINO)
    not_exportable = ''

    def build_model(self, info, build_base: Callable) -> nn.Module:
        raise NotImplementedError

    def prepare(self, base: nn.Module, base_info, config,
                options) -> Tuple[nn.Module, object, int]:
        raise NotImplementedError

    def check(self, config, options) -> None:
        """Refuse options this method cannot train with (before any data is read)."""

    def training_state(self, config, options, info, generator: torch.Generator) -> object:
        raise NotImplementedError

    def train_step(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   state, step: int) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        raise NotImplementedError

    finish_stage = ''  # the name of ``finish`` as a stage of its own ('' = none)

    def phases(self, config, options) -> List[Tuple[str, int, float]]:
        """``(name, epochs, learning rate)`` of each training phase, in order."""
        return [('train', config.epochs, config.lr)]

    def start_phase(self, model: nn.Module, name: str, *, fresh: bool = True) -> int:
        """Before phase ``name`` (``fresh``: from its first epoch, not resumed): make what it
        trains trainable; returns its parameter count."""
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    def finish(self, model: nn.Module, info, config, options,
               logits: Callable[[List[np.ndarray]], torch.Tensor]) -> Dict[str, object]:
        """After the phases: update ``info`` (its ``method_params``) as a last step without
        gradients; ``logits`` runs the model on RGB images as the detector pipeline does
        (``Detector.logits``). Returns what to record in the checkpoint."""
        return {}


METHODS: Registry[Callable[[], Method]] = Registry('method')


def register_method(name: str):
    """Class decorator: register one instance of the ``Method`` subclass under ``name``."""
    def decorator(cls):
        instance = cls()
        instance.name = name
        METHODS.register(name)(lambda: instance)
        return cls
    return decorator


def get_method(name: str) -> Method:
    return METHODS.get(name)()


def list_methods() -> List[str]:
    return METHODS.names()
