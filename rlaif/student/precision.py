"""Precision: what forward passes compute in, per device.

The weights and the optimizer's state stay fp32 everywhere (`model.pick_dtype`); forward
passes run under autocast where the hardware multiplies bf16 matrices natively. One autocast
context that spans a whole generation call casts each trainable fp32 weight to bf16 once (the
cast is cached until the outermost context exits), not once per decoded token.
"""

from __future__ import annotations

import contextlib

import torch


def cpu_has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX-BF16 or AVX512-BF16).

    Without it, bf16 on a CPU is emulated and slower than fp32."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def pick_autocast(requested: str, device: torch.device) -> torch.dtype | None:
    """The dtype forward passes compute in under autocast, or None for plain fp32.

    `auto`: bf16 on CUDA devices that support it and on CPUs with bf16 matrix hardware
    (measured on the project's AMX machine: about 5x faster generation and 2.5x faster updates
    than fp32, bench/RESULTS.md); fp32 on MPS (fp16 there overflows without a loss scaler and
    bf16 needs macOS 14+) and on other CPUs.
    """
    if requested == "fp32":
        return None
    if requested == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_bf16_matmul():
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """A factory of autocast contexts for `device` computing in `dtype` (None: no autocast)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)
