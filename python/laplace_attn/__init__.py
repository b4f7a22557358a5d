"""laplace_attn: linear-time, interpretable replacements for softmax attention.

Importing the package loads the native operator library; the operators live in
``torch.ops.laplace_attn`` and are wrapped with documentation in
:mod:`laplace_attn.ops`.
"""
from pathlib import Path

import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C
from .ops import (
    gumbel_node_gate,
    laplace_linear_attention,
    laplace_scan,
    laplace_transform,
    laplacian_attention,
    laplacian_kernel,
    newton_schulz_inverse,
    nystrom_attention,
)
from .laplacian import LaplacianAttention
from .stlt import STLTAttention
from .models import DecoderLM
from .generation import generate, sample_next
from .swap import swap_attention
from .packing import cu_seqlens_from_lengths, pack_sequences, unpack_sequences

__version__ = _C.build_info()["version"]
_PACKAGE_DIR = Path(__file__).resolve().parent


def build_info() -> dict:
    """Version, CPU SIMD level chosen at run time, threads, OpenMP and CUDA support."""
    return _C.build_info()


def library_path() -> str:
    """Path of the op library, liblaplace_attn.so: link it (or ``torch.ops.load_library``
    it) to run models that call these operators without this Python package."""
    return str(_PACKAGE_DIR / "liblaplace_attn.so")


def infer_program() -> str:
    """Path of ``laplace-attn-infer``, the C++ program that runs a TorchScript file
    or an AOTInductor package on saved tensors (see docs/export.md)."""
    return str(_PACKAGE_DIR / "bin" / "laplace-attn-infer")


def set_cpu_simd(level: str) -> None:
    """Force the CPU kernels' instruction set: "auto", "avx512_bf16", "avx512", "avx2" or
    "baseline"."""
    _C.set_cpu_simd(level)


__all__ = [
    "pack_sequences",
    "unpack_sequences",
    "cu_seqlens_from_lengths",
    "laplace_scan",
    "laplace_linear_attention",
    "laplace_transform",
    "gumbel_node_gate",
    "laplacian_kernel",
    "laplacian_attention",
    "newton_schulz_inverse",
    "nystrom_attention",
    "STLTAttention",
    "LaplacianAttention",
    "swap_attention",
    "DecoderLM",
    "generate",
    "sample_next",
    "build_info",
    "set_cpu_simd",
    "library_path",
    "infer_program",
    "__version__",
]
