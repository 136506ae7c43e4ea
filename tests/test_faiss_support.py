"""The choice between CPU and GPU faiss, with the real faiss-cpu and with a stand-in GPU build."""

from __future__ import annotations

import types

import pytest
import torch

from tokenprune.faiss_support import FaissPlacement, choose_faiss_placement, import_faiss, to_placement


def gpu_faiss(gpus: int) -> types.SimpleNamespace:
    """A stand-in for a faiss built with GPU support that sees ``gpus`` GPUs and records moves."""
    moved: list[int] = []
    return types.SimpleNamespace(
        StandardGpuResources=lambda: "resources",
        get_num_gpus=lambda: gpus,
        index_cpu_to_gpu=lambda resources, gpu, index: moved.append(gpu) or ("on-gpu", gpu, index),
        moved=moved,
    )


def test_the_installed_cpu_faiss_is_chosen_on_cpu_and_leaves_the_index_where_it_is() -> None:
    faiss = import_faiss()
    placement = choose_faiss_placement(torch.device("cpu"))
    assert placement == FaissPlacement("faiss-cpu", None, "the job runs on cpu")
    index = faiss.IndexFlatIP(4)
    assert to_placement(index, placement) is index


def test_a_cuda_job_without_gpu_faiss_stays_on_cpu_faiss_and_says_why() -> None:
    cpu_only = types.SimpleNamespace(get_num_gpus=lambda: 0)  # faiss-cpu has no StandardGpuResources
    placement = choose_faiss_placement(torch.device("cuda:1"), cpu_only)
    assert (placement.backend, placement.gpu) == ("faiss-cpu", None)
    assert "pip install 'tokenprune[gpu]'" in placement.reason
    assert choose_faiss_placement(torch.device("cuda:1"), gpu_faiss(0)).reason == "faiss sees no GPU"


def test_gpu_faiss_runs_on_the_gpu_the_job_claimed_and_never_for_a_cpu_job() -> None:
    faiss = gpu_faiss(2)
    placement = choose_faiss_placement(torch.device("cuda:1"), faiss)
    assert (placement.backend, placement.gpu) == ("faiss-gpu", 1)
    assert to_placement("index", placement, faiss) == ("on-gpu", 1, "index") and faiss.moved == [1]
    # A CPU job on a machine whose faiss sees GPUs must not take one another job may hold.
    assert choose_faiss_placement(torch.device("cpu"), faiss).backend == "faiss-cpu"


def test_without_faiss_the_error_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(Exception, match=r"pip install 'tokenprune\[cpu\]' \(or 'tokenprune\[gpu\]'"):
        import_faiss()
