"""Precision and layout: what ``auto`` picks, and the refusals (ROS-free)."""
import pytest
import torch

from anomseg_ros import precision
from anomseg_ros.errors import ConfigError


@pytest.fixture
def flags(monkeypatch):
    def set_flags(*names):
        monkeypatch.setattr(precision, 'cpu_flags', lambda: frozenset(names))
    return set_flags


def test_auto_takes_bf16_only_on_a_cpu_with_native_bf16(flags):
    cpu = torch.device('cpu')
    flags('avx2', 'avx512f', 'amx_bf16')
    assert precision.resolve_precision('auto', cpu) == torch.bfloat16
    flags('avx2', 'avx512_bf16')
    assert precision.resolve_precision('auto', cpu) == torch.bfloat16
    flags('avx2', 'avx512f')
    assert precision.resolve_precision('auto', cpu) == torch.float32


def test_auto_takes_fp16_on_cuda():
    assert precision.resolve_precision('auto', torch.device('cuda')) == torch.float16


def test_auto_picks_a_path_this_machine_has():
    dtype = precision.resolve_precision('auto', torch.device('cpu'))
    x = torch.randn(1, 3, 16, 16)
    conv = precision.to_fast_layout(torch.nn.Conv2d(3, 4, 3))
    with precision.autocast(torch.device('cpu'), dtype):
        y = conv(precision.to_fast_layout(x))
    assert y.dtype == dtype and torch.isfinite(y).all()


def test_fp16_on_the_cpu_and_unknown_names_are_refused():
    with pytest.raises(ConfigError, match='fp16 is for CUDA'):
        precision.resolve_precision('fp16', torch.device('cpu'))
    with pytest.raises(ConfigError, match='auto, fp32, bf16, fp16'):
        precision.resolve_precision('int4', torch.device('cpu'))
