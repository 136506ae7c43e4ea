"""A wheel install (pip install ., not -e) carries everything the library reads at run time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_a_wheel_install_validates_configs_and_runs_a_stage(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("tokenprune-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    # Run outside the checkout, with the installed copy ahead of the editable one on the path.
    environment = {**os.environ, "PYTHONPATH": str(site)}

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=tmp_path, env=environment)

    probe = run("-c", "import json, tokenprune, tokenprune.config as c; print(json.dumps([tokenprune.__file__, c.load_schema()['title']]))")
    assert probe.returncode == 0, probe.stderr
    location, title = json.loads(probe.stdout)
    assert Path(location).is_relative_to(site) and title == "tokenprune configuration"
    assert "match-budget" in run("-m", "tokenprune.cli", "--help").stdout
    # A stage that builds a model, whose settings take the schema's defaults.
    stage = run("-m", "tokenprune.cli", "untrained-model", "--backbone", "embedded", "--query-max-length", "16",
                "--passage-max-length", "32", "--candidate-tokens", "content", "--output", str(tmp_path / "model"))  # fmt: skip
    assert stage.returncode == 0, stage.stderr[-2000:]
    written = json.loads((tmp_path / "model" / "tokenprune.json").read_text())
    # The untrained backbone keeps its own 384 dimensions; query_expansion is the schema's default.
    assert (written["dim"], written["query_expansion"], written["passage_max_length"]) == (384, False, 32)
