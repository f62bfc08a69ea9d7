"""Device choice (CUDA / MPS / CPU), mixed precision and out-of-memory handling, for every task.

Nothing here hard-codes a device: ``pick_device(None)`` takes CUDA when present, then Apple MPS, then
the CPU; a user's choice (``"cpu"``, ``"cuda:1"``, a ``torch.device``) is honoured or refused clearly.
"""

from __future__ import annotations

import contextlib

import torch

from ._validate import InputError

__all__ = ["pick_device", "describe", "autocast", "is_oom", "free_memory", "peak_memory", "reset_peak_memory", "available_devices",
           "trim_host_memory"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device names a user can choose from, best first (e.g. ``["cuda:0", "cpu"]``)."""
    out = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if _mps_available():
        out.append("mps")
    return out + ["cpu"]


def pick_device(device=None) -> torch.device:
    """``None``/``"auto"``: CUDA if available, else MPS, else CPU. Otherwise the named device, checked."""
    if isinstance(device, torch.device):
        dev = device
    elif device is None or str(device).lower() in ("", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    else:
        try:
            dev = torch.device(str(device).lower())
        except RuntimeError as exc:
            raise InputError(f"unknown device {device!r}; choose from {', '.join(available_devices())}.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available; use 'cpu' or 'auto'.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA device(s)).")
    if dev.type == "mps" and not _mps_available():
        raise InputError(f"device {device!r} asked for but MPS is not available; use 'cpu' or 'auto'.")
    return dev


def describe(device) -> str:
    """Human-readable device name, e.g. ``"CUDA (NVIDIA H100)"`` or ``"CPU (2 threads)"``."""
    dev = pick_device(device)
    if dev.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(dev)})"
    if dev.type == "mps":
        return "MPS (Apple GPU)"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


def autocast(device, enabled: bool = True):
    """Mixed-precision context: float16 autocast on CUDA (bfloat16 where supported better), none elsewhere."""
    dev = pick_device(device)
    if enabled and dev.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    return contextlib.nullcontext()


def is_oom(exc: BaseException) -> bool:
    """True for accelerator (or host) out-of-memory errors, which a caller may retry smaller."""
    oom_types = tuple(t for t in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "OutOfMemoryError", None)) if t)
    if oom_types and isinstance(exc, oom_types):
        return True
    if isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg or "not enough memory" in msg)


def free_memory(device=None) -> None:
    """Release cached accelerator memory (after a run, or before retrying smaller)."""
    import gc

    gc.collect()
    dev = pick_device(device) if device is not None else None
    if (dev is None or dev.type == "cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    if (dev is None or dev.type == "mps") and _mps_available():
        try:
            torch.mps.empty_cache()
        except Exception:  # noqa: BLE001
            pass


_LIBC = None


def trim_host_memory() -> bool:
    """Give freed host memory back to the operating system (glibc ``malloc_trim``; a no-op elsewhere).

    Tiles of different shapes leave the C heap fragmented, so the resident size of a long block-by-block
    run creeps up with the image size; trimming after each block keeps it at one block's working set."""
    global _LIBC
    if _LIBC is False:
        return False
    try:
        if _LIBC is None:
            import ctypes
            import ctypes.util

            _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_LIBC.malloc_trim(0))
    except (OSError, AttributeError):
        _LIBC = False
        return False


def reset_peak_memory(device) -> None:
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def peak_memory(device) -> int | None:
    """Peak allocated accelerator memory in bytes since the last reset (``None`` on CPU/MPS)."""
    dev = pick_device(device)
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return None
