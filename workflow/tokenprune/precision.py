"""Numeric precision of the transformer's forward (and backward) passes.

The backbone's matrix products run under ``torch.autocast`` in a 16-bit type
where the hardware does them natively, and in fp32 elsewhere; layer norms,
softmaxes and the loss stay in fp32 either way (autocast's own policy), and
the index always stores fp16 vectors. ``auto`` picks:

========  ======================================  ======================================
purpose   GPU                                     CPU
========  ======================================  ======================================
training  bf16 where the GPU supports it, else    bf16 where the CPU has native bf16
          fp32                                    (``avx512_bf16``/``amx_bf16``), else fp32
encoding  fp16                                    as for training
========  ======================================  ======================================

On a CPU without native bf16 instructions bf16 is emulated and slower than
fp32, hence the check. fp16 is not offered for training (it would need loss
scaling) nor on the CPU. Query encoding at retrieval is cheap and stays fp32.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from tokenprune.errors import TokenpruneError

__all__ = [
    "PRECISIONS",
    "Purpose",
    "AUTOCAST_DTYPES",
    "NATIVE_BF16_FLAGS",
    "cpu_has_native_bf16",
    "resolve_precision",
    "autocast",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
Purpose = Literal["training", "encoding"]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# /proc/cpuinfo flags of CPUs that multiply bf16 in hardware (x86 and Arm).
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@functools.cache
def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU executes bf16 arithmetic natively (Linux; elsewhere False, so ``auto`` stays fp32)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return bool(flags & NATIVE_BF16_FLAGS)


def resolve_precision(setting: str, device: torch.device, purpose: Purpose) -> str:
    """The precision ``setting`` means on ``device`` for ``purpose``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Raises
    ------
    TokenpruneError
        If ``setting`` is unknown, or asks for fp16 on the CPU or for training.
    """
    if setting not in PRECISIONS:
        raise TokenpruneError(f"precision must be one of {list(PRECISIONS)}, got {setting!r}")
    if setting == "auto":
        if device.type == "cuda":
            if purpose == "encoding":
                return "fp16"
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"
    if setting == "fp16" and (device.type != "cuda" or purpose == "training"):
        where = "training (it would need loss scaling)" if purpose == "training" else "the CPU"
        raise TokenpruneError(f"precision 'fp16' is not supported for {where}; use 'bf16' or 'fp32'")
    return setting


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.autocast`` to the resolved ``precision`` (a no-op for fp32)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        yield
