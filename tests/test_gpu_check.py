"""benchmarks/gpu_check.py on the CPU, so the GPU check cannot rot between GPU sessions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_gpu_check_passes_on_the_cpu_with_a_float16_copy_of_the_backbone(tmp_path: Path) -> None:
    script = REPO / "benchmarks" / "gpu_check.py"
    copy = tmp_path / "minilm-fp16"
    subprocess.run([sys.executable, str(script), "--write-fp16-backbone", str(copy)], check=True)
    assert (copy / "model.safetensors").stat().st_size < 50 * 2**20 and (copy / "vocab.txt").is_file()
    output = tmp_path / "check.json"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--device",
            "cpu",
            "--backbone",
            str(copy),
            "--batch",
            "2",
            "--passages",
            "8",
            "--documents",
            "200",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(output.read_text())["rows"]
    checks = {row["check"] for row in rows}
    assert {
        f"train {strategy} {precision}"
        for strategy in ("none", "first", "idf", "unused", "attention", "pool")
        for precision in ("fp32", "bf16")
    } <= checks
    assert {"encode fp32 vs CPU", "MaxSim top 10 vs CPU", "GPU lock, two jobs"} <= checks
    assert all(row["passed"] for row in rows)
