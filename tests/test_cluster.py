"""The tiny study on a real one-node SLURM cluster, through profiles/slurm.

tests/cluster/slurm-up.sh installs (apt) and starts SLURM on this machine; it
needs root and Debian. Where it cannot, the test skips and says why.

Each job through sbatch costs about 20 s on this 2-core node (submission, status
polls, the job-step's own Snakemake start), so the test runs the part of the tiny
study behind two metrics files instead of all 65 jobs: one strategy trained in the
loop and the same selection applied post hoc. Those 15 jobs hold every kind of job
the profile shapes (GPU-sized torch jobs: train, index and post-hoc shards,
retrieve; CPU jobs: data, IDF, negatives, merge, evaluate).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_study

pytestmark = pytest.mark.slow

CLUSTER = REPO / "tests" / "cluster"
#: The metrics the cluster computes: ``first`` trained in the loop, and ``first`` applied post hoc to ``none``.
TARGETS = (
    "results/metrics/tiny/first/k4/seed1/tiny/test.exact.json",
    "results/metrics/tiny/posthoc-first/k4/seed1/tiny/test.exact.json",
)
#: The profile sizes the torch jobs for GPU nodes (gpu: 1, 8 CPUs); this node has 2 CPUs and no GPU.
TORCH_RULES = (
    "train",
    "index",
    "index_shard",
    "posthoc_index",
    "posthoc_index_shard",
    "retrieve",
    "retrieve_compressed",
)
CPU_NODE = [
    "--set-resources",
    *(f"{rule}:{name}=0" for rule in TORCH_RULES for name in ("gpu", "cpus_per_gpu")),
    "--set-threads",
    *(f"{rule}=1" for rule in TORCH_RULES),
]
#: This cluster keeps no accounting (no slurmdbd): squeue reports job states instead of sacct, and no account exists.
NO_ACCOUNTING = [
    "--slurm-status-command",
    "squeue",
    "--slurm-no-account",
    "--slurm-init-seconds-before-status-checks",
    "5",
]


@pytest.fixture(scope="module")
def slurm() -> None:
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (tests/cluster/slurm-up.sh)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    started = subprocess.run([str(CLUSTER / "slurm-up.sh")], capture_output=True, text=True, timeout=900)
    if started.returncode != 0:
        pytest.skip(f"SLURM did not start here: {(started.stderr or started.stdout).strip()[-400:]}")
    yield
    subprocess.run(["scancel", "--user", "root"], capture_output=True)


def cancel_first_running(rule: str, cancelled: list[str], stop: threading.Event) -> None:
    """scancel the first job of ``rule`` seen running (its comment is 'rule_<rule>_wildcards_...')."""
    while not stop.is_set():
        listing = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True).stdout
        for line in listing.splitlines():
            job, comment, state = line.split("|")
            if comment.startswith(f"rule_{rule}_") and state == "RUNNING":
                subprocess.run(["scancel", job], check=True)
                cancelled.append(job)
                return
        time.sleep(0.5)


def metric_files(workdir: Path) -> dict[str, bytes]:
    root = workdir / "results" / "metrics"
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def rules_planned(dry_run_stdout: str) -> set[str]:
    """The rules of a ``snakemake -n --quiet rules`` job table."""
    rows = (line.split() for line in dry_run_stdout.splitlines())
    return {row[0] for row in rows if len(row) == 2 and row[1].isdigit()} - {"total"}


def test_tiny_study_through_the_slurm_profile(slurm, tiny_report: Path, tmp_path: Path) -> None:
    """Every job goes through sbatch, a job cancelled while it runs is retried, and the metrics equal a local run's
    (the session's local tiny study, ``tiny_report``)."""
    workflow = ["snakemake", "--snakefile", str(REPO / "Snakefile")]
    local = tiny_report

    cluster = tmp_path / "cluster"
    config = tiny_study(cluster)
    command = [
        *workflow,
        "--directory",
        str(cluster),
        "--configfile",
        str(config),
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        "--default-resources",
        "slurm_partition=debug",
        *NO_ACCOUNTING,
        *CPU_NODE,
        "--jobs",
        "2",
    ]
    planned = subprocess.run([*command, "-n", "--quiet", "rules", "--", *TARGETS], capture_output=True, text=True)
    assert planned.returncode == 0, planned.stderr[-3000:]
    rules_of_the_dag = rules_planned(planned.stdout)
    assert {"train", "index_shard", "posthoc_index_shard", "retrieve", "evaluate"} <= rules_of_the_dag
    cancelled: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=cancel_first_running, args=("train", cancelled, stop), daemon=True)
    watcher.start()
    try:
        ran = subprocess.run([*command, "--", *TARGETS], capture_output=True, text=True, timeout=1800)
    finally:
        stop.set()
        watcher.join()
    assert ran.returncode == 0, ran.stderr[-4000:]

    # Every rule of the DAG left a SLURM log: it went through sbatch.
    submitted = {path.name.removeprefix("rule_") for path in (cluster / ".snakemake" / "slurm_logs").iterdir()}
    assert submitted == rules_of_the_dag
    # The cancelled training job was submitted again (retries: 1) and the study completed.
    assert len(cancelled) == 1
    retried = [
        folder
        for folder in (cluster / ".snakemake" / "slurm_logs" / "rule_train").iterdir()
        if len(list(folder.glob("*.log"))) == 2
    ]
    assert len(retried) == 1, "the cancelled training job was not resubmitted"
    # The same numbers as on the local executor, file for file.
    on_the_cluster = metric_files(cluster)
    assert {name.removesuffix(".perquery.tsv").removesuffix(".json") for name in on_the_cluster} == {
        target.removeprefix("results/metrics/").removesuffix(".json") for target in TARGETS
    }
    on_the_local_executor = metric_files(local)
    assert on_the_cluster == {name: on_the_local_executor[name] for name in on_the_cluster}
