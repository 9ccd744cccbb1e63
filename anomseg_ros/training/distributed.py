"""Multi-process training as launched by ``torchrun`` (one process per GPU), and the no-op
single-process case. torchrun sets WORLD_SIZE, RANK and LOCAL_RANK in each process."""
import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group when WORLD_SIZE > 1 (NCCL on CUDA, gloo on the CPU) and return
    this process's device (``cuda:LOCAL_RANK`` on CUDA)."""
    if int(os.environ.get('WORLD_SIZE', '1')) <= 1 or dist.is_initialized():
        return device
    if device.type == 'cuda':
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', '0')))
        torch.cuda.set_device(device)
    dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo',
                            device_id=device if device.type == 'cuda' else None)
    return device


def shutdown_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True when running as one of several torchrun processes."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's index, 0 when alone."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of training processes."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """True in the process that prints and writes checkpoints (rank 0)."""
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place; unchanged in a single process."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor, *, src: int = 0) -> torch.Tensor:
    """Copy ``tensor`` from process ``src`` to all others, in place."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def broadcast_buffers(module: torch.nn.Module, *, src: int = 0) -> None:
    """Give every process ``src``'s buffers (batch norm statistics, which each process updates
    from its own batches), so that all evaluate the model ``src`` saves."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=src)
