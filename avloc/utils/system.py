"""What this machine offers (usable cores, the torch device) and how errors read in one line."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX): there, bf16 autocast runs the
    convolutions about twice as fast as fp32; elsewhere it is emulated and slower (Linux flags; else False)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return any(flag in line.split() for flag in CPU_BF16_FLAGS)
    except OSError:
        pass
    return False


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type name), at most ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit]


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str = "auto", local_rank: int = 0):
    """'auto' -> cuda:<local_rank> when CUDA is available, else cpu; 'cuda' without CUDA is an InputError."""
    import torch

    from avloc.errors import InputError

    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {device!r} asked for, but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    if name != "cpu":
        raise InputError(f"device must be one of {DEVICE_CHOICES} (or cuda:N), got {device!r}")
    return torch.device("cpu")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
