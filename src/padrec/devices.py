"""The one device resolver: a device name from a config or the command line -> ``torch.device``."""

from __future__ import annotations

import re

import torch

__all__ = ["DEVICE_FORMS", "resolve_device", "resolve_precision"]

DEVICE_FORMS = "cpu, cuda, cuda:N, mps or auto"
_DEVICE_RE = re.compile(r"(cpu|cuda|cuda:\d+|mps)")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(name: str) -> torch.device:
    """Turn a device name into a ``torch.device``, checking that the device exists here.

    Args:
        name: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or
            ``mps`` (Apple GPUs, where torch supports them).

    Raises:
        ValueError: ``name`` is none of these forms (e.g. ``gpu0``); the message names the
            value and the allowed forms.
        RuntimeError: the device is not available on this machine, e.g.
            ``device 'cuda' requested but CUDA is not available``.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(name, str) or not _DEVICE_RE.fullmatch(name):
        raise ValueError(f"device {name!r} is not a valid torch device (use {DEVICE_FORMS})")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available; use cpu or auto")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise RuntimeError(f"device {name!r} requested but only {count} CUDA device(s) are available")
    if dev.type == "mps" and not _mps_available():
        raise RuntimeError(f"device {name!r} requested but MPS is not available; use cpu or auto")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a training ``precision`` setting on ``device``: ``auto`` is bf16
    on a CUDA device that supports it and fp32 elsewhere (bf16 autocast is slow on CPUs)."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively: a CUDA device with bf16
    support, or a CPU with AVX512-BF16 / AMX instructions (oneDNN's check). Elsewhere bf16
    autocast is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on ``device`` in bytes: CUDA's free memory
    (``torch.cuda.mem_get_info``), or on the CPU the kernel's ``MemAvailable`` (Linux) or the
    free physical pages; None where it cannot be measured."""
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None
