"""Which faiss a job uses, CPU or GPU, and moving an index to the GPU it claimed.

faiss comes from one of two wheels that install the same ``faiss`` package:
``faiss-cpu`` (the ``cpu`` extra) or ``faiss-gpu`` (the ``gpu`` extra, CUDA 12,
Linux x86-64). A job uses GPU faiss only when both hold: the installed faiss
was built with GPU support and sees a GPU, and the job itself runs on a CUDA
device. A CPU job on a GPU machine stays on the CPU, so that it never takes a
GPU another job claimed (see :mod:`tokenprune.devices`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch

from tokenprune.errors import TokenpruneError

log = logging.getLogger(__name__)

__all__ = ["FaissPlacement", "choose_faiss_placement", "import_faiss", "to_placement"]


def import_faiss() -> ModuleType:
    """The ``faiss`` module, or an error that says which extra installs it."""
    try:
        import faiss
    except ImportError:
        raise TokenpruneError(
            "faiss is not installed, and ANN search and compression need it: pip install 'tokenprune[cpu]' "
            "(or 'tokenprune[gpu]' on a Linux x86-64 machine with CUDA 12)"
        ) from None
    return faiss


@dataclass(frozen=True)
class FaissPlacement:
    """Where faiss runs for one job.

    Attributes
    ----------
    backend
        ``"faiss-gpu"`` or ``"faiss-cpu"``.
    gpu
        The GPU ordinal (faiss's, which is torch's) for ``faiss-gpu``, else ``None``.
    reason
        Why, in words, for the job's log.
    """

    backend: str
    gpu: int | None
    reason: str


def choose_faiss_placement(device: torch.device, faiss: ModuleType | None = None) -> FaissPlacement:
    """GPU faiss on the job's own GPU when faiss has GPU support and ``device`` is CUDA; CPU faiss otherwise."""
    faiss = faiss or import_faiss()
    if device.type != "cuda":
        return FaissPlacement("faiss-cpu", None, f"the job runs on {device.type}")
    if not hasattr(faiss, "StandardGpuResources"):
        return FaissPlacement(
            "faiss-cpu", None, "the installed faiss has no GPU support (pip install 'tokenprune[gpu]')"
        )
    if faiss.get_num_gpus() == 0:
        return FaissPlacement("faiss-cpu", None, "faiss sees no GPU")
    gpu = device.index if device.index is not None else torch.cuda.current_device()
    return FaissPlacement("faiss-gpu", gpu, f"the job runs on cuda:{gpu} and faiss has GPU support")


def to_placement(index: Any, placement: FaissPlacement, faiss: ModuleType | None = None) -> Any:  # noqa: ANN401 - faiss.Index
    """``index`` moved to the placement's GPU (search settings such as ``nprobe`` kept), or ``index`` itself on CPU."""
    if placement.gpu is None:
        return index
    faiss = faiss or import_faiss()
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), placement.gpu, index)
