"""What the machine is fast at: the planner resolves ``--precision auto`` and ``--cache-dtype auto`` from it."""

from __future__ import annotations

from pathlib import Path


def fast_bf16_available() -> bool:
    """bf16 matmuls in hardware: a CUDA GPU that supports them, or a CPU with AVX512-BF16 / AMX."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


__all__ = ["fast_bf16_available"]
