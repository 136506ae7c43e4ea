"""A wheel install (pip install ., not -e) into a fresh venv carries everything the library reads at run time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_a_wheel_in_a_fresh_venv_validates_configs_and_runs_a_stage(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("tokenprune-*.whl")
    # A new user's install: a fresh venv, the CPU torch wheel (the one the README names), then
    # the wheel with its dependencies resolved by pip; nothing comes from the checkout.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile"]
    installed = subprocess.run([*pip, "torch==2.13.0", f"{wheel}[cpu]"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-3000:]
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment["PATH"] = f"{venv / 'bin'}{os.pathsep}{environment['PATH']}"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=tmp_path, env=environment)

    probe = run(
        "python",
        "-c",
        "import json, tokenprune, tokenprune.config as c; print(json.dumps([tokenprune.__file__, c.load_schema()['title']]))",
    )
    assert probe.returncode == 0, probe.stderr
    location, title = json.loads(probe.stdout)
    assert Path(location).is_relative_to(venv) and title == "tokenprune configuration"
    assert "match-budget" in run("tokenprune", "--help").stdout
    # A stage that builds a model, whose settings take the schema's defaults.
    stage = run(
        "tokenprune",
        "untrained-model",
        "--backbone",
        "embedded",
        "--query-max-length",
        "16",
        "--passage-max-length",
        "32",
        "--candidate-tokens",
        "content",
        "--output",
        str(tmp_path / "model"),
    )
    assert stage.returncode == 0, stage.stderr[-2000:]
    written = json.loads((tmp_path / "model" / "tokenprune.json").read_text())
    # The untrained backbone keeps its own 384 dimensions; query_expansion is the schema's default.
    assert (written["dim"], written["query_expansion"], written["passage_max_length"]) == (384, False, 32)
