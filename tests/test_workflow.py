"""The Snakemake workflow: the default config's DAG builds, and a bad config fails at parse time."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import REPO


def dry_run(workdir: Path, config_overrides: dict | None = None) -> None:
    """Dry-run the workflow through the Snakemake API; raises on any error in Snakefile, config or DAG."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[REPO / "config.yaml"], config=config_overrides or {}),
            snakefile=REPO / "Snakefile",
            workdir=workdir,
        )
        workflow.dag().execute_workflow(executor="local", pseudo_executor="dryrun")


def test_default_dag_has_every_stage(tmp_path: Path) -> None:
    result = subprocess.run(
        ["snakemake", "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(REPO / "config.yaml"), "--quiet", "rules"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    jobs = dict(
        (line.split()[0], int(line.split()[1]))
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    )
    # 2 collections; baseline once + 4 strategies x 2 k = 9 trained models, plus the untrained backbone:
    # 10 models indexed and searched on 2 evaluation sets; BM25 on each; every run evaluated.
    assert jobs == {
        "prepare_data": 2, "compute_idf": 1, "mine_negatives": 1, "train": 9, "untrained_backbone": 1,
        "index": 20, "retrieve": 20, "bm25": 2, "evaluate": 22, "all": 1, "total": 79,
    }  # fmt: skip


def test_dry_run_through_the_python_api(tmp_path: Path) -> None:
    dry_run(tmp_path)


def test_typo_in_config_fails_at_dry_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="'strategies\\[0\\]': 'atention' is not one of"):
        dry_run(tmp_path, {"strategies": ["atention"]})
