"""GPU claiming for concurrent jobs on one machine, tested with lock files (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tokenprune.devices import _held, claim_slot
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
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from tokenprune.devices import claim_slot
            print(claim_slot({NAMES!r}, {str(tmp_path)!r}), flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "0"
        assert claim_slot(NAMES, tmp_path, timeout=0.0) == 1
        with pytest.raises(TokenpruneError):
            claim_slot(NAMES, tmp_path, timeout=0.0)
    finally:
        holder.kill()
        holder.wait()
    assert claim_slot(NAMES, tmp_path, timeout=5.0, poll=0.05) == 0
