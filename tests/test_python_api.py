"""The Python API of docs/python.md: its example runs as written, on a small prepared collection."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tokenprune
from conftest import REPO, write_topics_collection


def test_import_tokenprune_does_not_load_torch() -> None:
    probe = "import sys, tokenprune; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


def test_every_public_name_resolves() -> None:
    assert set(tokenprune.__all__) == {"TokenpruneError", "__version__", *tokenprune._API}
    for name in tokenprune.__all__:
        assert getattr(tokenprune, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = tokenprune.nope


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path: Path, tokenizer) -> None:
    from tokenprune.data import DatasetSpec, prepare_dataset
    from tokenprune.data.sources import open_collection

    beir = write_topics_collection(tmp_path / "beir")
    spec = DatasetSpec.from_config("tiny", {"beir_folder": str(beir), "splits": ["train", "test"]})
    prepare_dataset(spec, open_collection(spec, None, tmp_path / "irds"), tmp_path / "data", tokenizer)
    page = (REPO / "docs" / "python.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    # The page's collection, swapped for the prepared tiny one.
    example = example.replace('Path("resources/data/scifact")', f"Path({str(tmp_path / 'data')!r})")
    run = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "python-example" / "metrics.json").read_text())
    assert 0 < metrics["measures"]["nDCG@10"] <= 1 and metrics["queries"] > 0
    assert run.stdout.split()[0] != "100.0"  # first k=10 pruned the index
