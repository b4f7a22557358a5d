"""Shared fixtures: `device` runs a test on the CPU and, when torch.cuda.is_available(),
again on CUDA, against the same references (computed on the CPU in float64)."""
import pytest
import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


def to_device(obj, device):
    """obj with every tensor in it (dicts, lists, tuples) moved to device."""
    if torch.is_tensor(obj):
        return obj.to(device).detach().requires_grad_(obj.requires_grad)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj
