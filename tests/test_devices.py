"""GPU claiming for concurrent jobs on one machine, tested with lock files (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import fake_nvidia_smi
from tokenprune.devices import _held, cap_cpu_threads, claim_slot, visible_gpu_count
from tokenprune.errors import TokenpruneError

NAMES = ["gpu-a", "gpu-b"]


@pytest.fixture(autouse=True)
def release_claims():
    yield
    while _held:
        _held.pop().close()


def test_jobs_claim_different_gpus_and_wait_when_all_are_taken(tmp_path: Path) -> None:
    assert claim_slot(NAMES, tmp_path) == 0
    # The lock is per open file, so a second claim in the same process behaves like another job.
    assert claim_slot(NAMES, tmp_path) == 1
    with pytest.raises(TokenpruneError, match=r"all 2 GPUs stayed busy for 0 s \(locks in .*\); run fewer GPU jobs"):
        claim_slot(NAMES, tmp_path, timeout=0.0)
    _held.pop(0).close()  # the first job ends
    assert claim_slot(NAMES, tmp_path, timeout=0.0) == 0


def test_a_killed_job_releases_its_gpu(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from tokenprune.devices import claim_slot
            print(claim_slot({NAMES!r}, {str(tmp_path)!r}), flush=True)
            time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "0"
        assert claim_slot(NAMES, tmp_path, timeout=0.0) == 1
        with pytest.raises(TokenpruneError):
            claim_slot(NAMES, tmp_path, timeout=0.0)
    finally:
        holder.kill()
        holder.wait()
    assert claim_slot(NAMES, tmp_path, timeout=5.0, poll=0.05) == 0


TWO_GPUS_ONE_WITH_MIG = (
    "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\n"
    "  MIG 3g.71gb     Device  0: (UUID: MIG-bbbb)\n"
    "  MIG 3g.71gb     Device  1: (UUID: MIG-cccc)\n"
    "GPU 1: NVIDIA H200 (UUID: GPU-dddd)\n"
)


@pytest.mark.parametrize(
    ("visible", "count"),
    [("", 0), ("-1", 0), ("0", 1), ("0,1", 2), ("2, 3", 2), ("GPU-aaaa,GPU-dddd", 2), ("0,-1,1", 1)],
)
def test_cuda_visible_devices_decides_how_many_gpus_a_job_sees(
    visible: str, count: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listing would say 2; the variable wins, and CUDA ignores everything from its first invalid entry.
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path, TWO_GPUS_ONE_WITH_MIG)))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert visible_gpu_count() == count


def test_without_cuda_visible_devices_nvidia_smi_counts_gpus_not_mig_instances(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "two", TWO_GPUS_ONE_WITH_MIG)))
    assert visible_gpu_count() == 2
    # nvidia-smi installed without a working driver fails: no GPU.
    monkeypatch.setenv("PATH", str(fake_nvidia_smi(tmp_path / "broken", "NVIDIA-SMI has failed\n", exit_code=9)))
    assert visible_gpu_count() == 0
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert visible_gpu_count() == 0


def test_a_jobs_thread_cap_reaches_faiss() -> None:
    """faiss's OpenMP pool does not follow torch's cap; cap_cpu_threads sets both."""
    import faiss
    import torch

    torch_before, faiss_before = torch.get_num_threads(), faiss.omp_get_max_threads()
    try:
        cap_cpu_threads(1, faiss=True)
        assert (torch.get_num_threads(), faiss.omp_get_max_threads()) == (1, 1)
    finally:
        torch.set_num_threads(torch_before)
        faiss.omp_set_num_threads(faiss_before)


@pytest.mark.parametrize("threads", [0, -2])
def test_a_thread_cap_must_be_positive(threads: int) -> None:
    with pytest.raises(TokenpruneError, match=f"threads must be positive, got {threads}"):
        cap_cpu_threads(threads, faiss=True)
