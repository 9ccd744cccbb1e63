"""Numeric precision and memory layout of the forward pass: which fast path a machine has.

``auto`` takes bfloat16 autocast on a CPU with native bf16 units (Intel AMX or AVX512-BF16,
read from the CPU's flags, never guessed), float16 autocast on CUDA, float32 otherwise. Convnets
run in channels-last layout on both (PyTorch's oneDNN and cuDNN kernels are fastest there).
Whatever the network computes in, the logits it returns are float32: scorers such as MSP need
more than bf16's 8 mantissa bits to tell 0.999 from 0.9999. ROS-free.
"""
import contextlib
import functools
import torch

from anomseg_ros.errors import ConfigError

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16', 'int8')
INT8 = 'int8'  # not a dtype: an OpenVINO model quantized by NNCF (runtimes/export.py)
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
NATIVE_BF16_FLAGS = ('amx_bf16', 'avx512_bf16')


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open('/proc/cpuinfo', encoding='ascii', errors='replace') as cpuinfo:
            for line in cpuinfo:
                if line.startswith('flags'):
                    return frozenset(line.partition(':')[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 in hardware (AMX or AVX512-BF16); elsewhere bf16
    is emulated and slower than float32."""
    flags = cpu_flags()
    if flags:
        return any(flag in flags for flag in NATIVE_BF16_FLAGS)
    capability = getattr(torch.backends.cpu, 'get_cpu_capability', lambda: '')()
    return 'AMX' in capability.upper()


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the forward pass computes in for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise ConfigError(f'precision must be one of {", ".join(PRECISIONS)}, got '
                          f'{precision!r}')
    if precision == 'auto':
        if device.type == 'cuda':
            return torch.float16
        return torch.bfloat16 if device.type == 'cpu' and cpu_has_native_bf16() else \
            torch.float32
    if precision == INT8:
        raise ConfigError('precision int8 is an OpenVINO model quantized with NNCF: it runs '
                          'with runtime openvino (or auto) on the CPU, from a PyTorch '
                          'checkpoint, or as an exported int8 .xml')
    if precision == 'fp16' and device.type != 'cuda':
        raise ConfigError('precision fp16 is for CUDA GPUs; on the CPU use bf16 (fast on CPUs '
                          'with AMX or AVX512-BF16) or fp32')
    return DTYPES[precision]


def precision_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to ``dtype`` on ``device``, or nothing for float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _float32_forward(module, x, *args, **kwargs):
    with torch.autocast(device_type=x.device.type, enabled=False):
        return type(module).forward(module, x.float(), *args, **kwargs)


def keep_input_layers_float32(model: torch.nn.Module) -> list:
    """Run the layers on the image (convolutions with 3 input channels) in float32 under
    autocast. Rounding the image and the first weights to bf16 is what moves the scores' tails:
    with the Cityscapes ERFNet on RoadAnomaly21 at 1024x512, bf16 throughout moved MaxLogit's
    FPR95 by +0.71 points, bf16 with a float32 first layer by +0.11, for about 15% more time
    than bf16 throughout. (The logits layer in float32 as well changed nothing measurable and
    cost another 10%.) Returns the names of the layers."""
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    names = []
    for name, module in model.named_modules():
        if isinstance(module, kinds) and module.in_channels == 3:
            module.forward = functools.partial(  # type: ignore[method-assign] # on purpose
                _float32_forward, module)
            names.append(name)
    return names


def to_fast_layout(tensor_or_module):
    """``tensor_or_module`` in channels-last layout (4-D tensors and modules' conv weights)."""
    if isinstance(tensor_or_module, torch.Tensor) and tensor_or_module.dim() != 4:
        return tensor_or_module
    return tensor_or_module.to(memory_format=torch.channels_last)
