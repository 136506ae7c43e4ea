"""Which GPU a job uses when several jobs share a multi-GPU workstation.

Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once, but it
does not tell a job *which* GPU is free. Each job therefore claims one: it
takes an exclusive ``flock`` on a lock file named after the GPU's UUID and
keeps it until the process exits. The operating system releases the lock
when the process ends, even when it is killed, so a crashed job never leaves
a GPU marked busy. A job that finds every GPU taken waits for one.

On a cluster the scheduler already hands each job its own GPU
(``CUDA_VISIBLE_DEVICES`` names one device), so nothing is locked there.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tokenprune.errors import TokenpruneError

if TYPE_CHECKING:
    import torch

__all__ = [
    "LOCK_DIR_VARIABLE",
    "default_lock_dir",
    "visible_gpu_count",
    "claim_slot",
    "claim_cuda_device",
    "cap_cpu_threads",
    "resolve_device",
]

log = logging.getLogger(__name__)

LOCK_DIR_VARIABLE = "TOKENPRUNE_GPU_LOCK_DIR"
# Lock files stay open for the life of the process: closing one releases the GPU.
_held: list[IO[bytes]] = []


def default_lock_dir() -> Path:
    """``$TOKENPRUNE_GPU_LOCK_DIR``, else a per-user folder in the system's temporary directory."""
    configured = os.environ.get(LOCK_DIR_VARIABLE)
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"tokenprune-gpu-locks-{os.getuid()}"


def visible_gpu_count() -> int:
    """NVIDIA GPUs a job started from this shell would see, without importing torch.

    ``CUDA_VISIBLE_DEVICES`` decides when it is set (empty or ``-1`` hides
    every GPU); otherwise ``nvidia-smi -L`` counts the machine's GPUs. No
    ``nvidia-smi``, or one that fails (no driver), means none. The workflow
    asks this once when it reads the Snakefile, to know whether its GPU
    stages are GPU jobs or CPU jobs on this machine.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        # CUDA stops at the first invalid entry; -1 is the conventional "none".
        entries = [entry.strip() for entry in visible.split(",")]
        return len(list(itertools.takewhile(lambda entry: entry and not entry.startswith("-"), entries)))
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return 0
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    # MIG instances are listed indented under their GPU; only the GPUs count.
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def claim_slot(names: list[str], lock_dir: str | Path, *, timeout: float = 86400.0, poll: float = 2.0) -> int:
    """Claim the first free slot of ``names`` for the rest of this process's life; return its position.

    Parameters
    ----------
    names
        One name per slot (GPU UUIDs), used as lock file names.
    lock_dir
        Folder of the lock files, shared by every job on the machine.
    timeout
        Seconds to wait for a slot before giving up.
    poll
        Seconds between attempts while every slot is taken.

    Raises
    ------
    TokenpruneError
        If no slot frees up within ``timeout``.
    """
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    waiting_logged = False
    while True:
        for position, name in enumerate(names):
            handle = open(lock_dir / f"{name}.lock", "ab")  # noqa: SIM115 - held open on purpose
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held.append(handle)
            return position
        if time.monotonic() >= deadline:
            raise TokenpruneError(
                f"all {len(names)} GPUs stayed busy for {timeout:.0f} s (locks in {str(lock_dir)!r}); "
                "run fewer GPU jobs at once (--resources gpu=N with N at most the number of GPUs)"
            )
        if not waiting_logged:
            log.info("all %d GPUs are taken by other jobs; waiting for one (locks in %s)", len(names), lock_dir)
            waiting_logged = True
        time.sleep(poll)


def claim_cuda_device(lock_dir: str | Path | None = None) -> torch.device:
    """The CUDA device this job should use: the only visible one, or the first free one when several are visible."""
    import torch

    count = torch.cuda.device_count()
    if count == 0:
        raise TokenpruneError("no CUDA device is visible")
    if count == 1:
        return torch.device("cuda:0")
    # UUIDs, not ordinals: jobs started with different CUDA_VISIBLE_DEVICES still agree on which GPU is which.
    names = [f"gpu-{torch.cuda.get_device_properties(i).uuid}" for i in range(count)]
    position = claim_slot(names, lock_dir or default_lock_dir())
    log.info("using GPU %d of %d (%s)", position, count, names[position])
    # Also the default device, so that libraries allocating on "cuda" land on the claimed GPU.
    torch.cuda.set_device(position)
    return torch.device(f"cuda:{position}")


def cap_cpu_threads(threads: int | None, *, faiss: bool = False) -> None:
    """Hold a job to the ``threads`` CPU threads its rule declared (``None``: every core).

    Caps torch's threads and, with ``faiss``, faiss's OpenMP pool, which does
    not follow torch's cap: an ANN or compression job declared with one
    thread would otherwise run on every core, beside the other jobs
    Snakemake placed there.
    """
    if threads is None:
        return
    if threads <= 0:
        raise TokenpruneError(f"threads must be positive, got {threads}")
    import torch

    torch.set_num_threads(threads)
    if faiss:
        from tokenprune.faiss_support import import_faiss

        import_faiss().omp_set_num_threads(threads)


def resolve_device(name: str, threads: int | None = None) -> torch.device:
    """The device a stage runs on: ``auto`` (a free GPU when one is visible, else the CPU), ``cpu`` or ``cuda[:N]``.

    ``threads`` (when given) caps torch's CPU threads first (:func:`cap_cpu_threads`).
    """
    import torch

    cap_cpu_threads(threads)
    if name == "auto":
        # Several GPU jobs on one multi-GPU machine: each claims a different GPU.
        return claim_cuda_device() if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TokenpruneError(f"device {name!r} is not a device; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TokenpruneError(f"device {name!r} asked for CUDA, but no GPU is visible")
    return device
