"""The Snakemake workflow: the default config's DAG builds, a bad config fails at parse time,
and a tiny study runs end to end into the HTML report."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, fake_nvidia_smi
from tokenprune.config import schema_defaults


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
        [
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config.yaml"),
            "--quiet",
            "rules",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    jobs = dict(
        (line.split()[0], int(line.split()[1]))
        for line in result.stdout.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    )
    # 2 collections; baseline once + 5 strategies x 2 k = 11 trained models, plus the untrained backbone and the
    # step-0 model: 13 models indexed and searched on 2 evaluation sets. The trained baseline and the untrained
    # backbone are pruned post hoc (first, idf, attention, pool at k 10 and 50) in one encoding pass per
    # collection, which also writes their own unpruned index (so 11 index jobs per collection, not 13): 2 x 8
    # more systems searched. BM25 on each set; every run evaluated. IDF of the training collection.
    assert jobs == {
        "prepare_data": 2,
        "compute_idf": 1,
        "mine_negatives": 1,
        "train": 11,
        "initial_model": 1,
        "untrained_backbone": 1,
        "index": 22,
        "posthoc_index": 4,
        "retrieve": 26 + 32,
        "bm25": 2,
        "evaluate": 26 + 32 + 2,
        # Per evaluation set: one comparison and one trade-off plot per measure; diagnostics per collection;
        # one verdict table over both sets.
        "summarize": 2,
        "plot_tradeoff": 2 * 4,
        "token_diagnostics": 2,
        "plot_training": 1,
        "claims": 1,
        "all": 1,
        "total": 178,
    }


def dry_run_jobs(workdir: Path, *arguments: str) -> tuple[dict[str, int], dict[str, set[int]]]:
    """Dry-run the workflow on the command line; return jobs per rule and the gpu values each rule's jobs ask for."""
    result = subprocess.run(
        ["snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *arguments],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs: dict[str, int] = {}
    gpus: dict[str, set[int]] = {}
    rule = None
    for line in result.stdout.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = match[1]
            jobs[rule] = jobs.get(rule, 0) + 1
        elif rule and (match := re.search(r"\bresources: .*\bgpu=(\d+)", line)):
            gpus.setdefault(rule, set()).add(int(match[1]))
    return jobs, gpus


def test_paper_preset_with_the_slurm_profile(tmp_path: Path) -> None:
    jobs, gpus = dry_run_jobs(
        tmp_path, "--configfile", "configs/paper-msmarco.yaml", "--workflow-profile", "profiles/slurm"
    )
    # 9 models trained on MS MARCO (baseline + the paper's 4 strategies x k in {10, 50}), the step-0 model and the
    # untrained backbone, plus 16 post-hoc systems (first, idf, attention, pool x 2 k, on the baseline and the
    # untrained backbone),
    # searched on 11 evaluation sets (dev, DL19, DL20, 8 BEIR) in 2 modes (exact, ANN). MS MARCO's 11 model
    # indexes are encoded in 16 shards each and its post-hoc ones (with the two base models' own) in 16 shard
    # jobs per base model; the 8 BEIR corpora in one job each. 3 measures per set, each its own trade-off figure.
    systems = 11 + 16
    assert jobs == {
        "prepare_data": 9,
        "compute_idf": 1,
        "mine_negatives": 1,
        "train": 9,
        "initial_model": 1,
        "untrained_backbone": 1,
        "index_shard": 9 * 16,
        "posthoc_index_shard": 2 * 16,
        "merge_index": systems,
        "index": 9 * 8,
        "posthoc_index": 2 * 8,
        "ann_index": systems * 9,
        "retrieve": systems * 11 * 2,
        "bm25": 11,
        "evaluate": systems * 11 * 2 + 11,
        "summarize": 11 * 2,
        "plot_tradeoff": 11 * 2 * 3,
        "token_diagnostics": 9,
        "plot_training": 1,
        "claims": 1,
        "all": 1,
    }
    for rule in ("train", "index", "index_shard", "posthoc_index", "posthoc_index_shard", "retrieve"):
        assert gpus[rule] == {1}, rule
    for rule in ("prepare_data", "merge_index", "ann_index", "evaluate", "summarize", "bm25", "claims"):
        assert gpus[rule] == {0}, rule


TORCH_RULES = ("train", "index", "posthoc_index", "retrieve")
FAISS_RULES = ("ann_index", "compress_index", "retrieve_compressed")


def job_threads(
    workdir: Path, environment: dict[str, str], *configfiles: Path
) -> tuple[dict[str, set[tuple[int, int]]], dict[str, int]]:
    """A local dry run of the default config (and ``configfiles`` on top): (gpu, --threads) of the
    torch and faiss rules' jobs, and every rule's most threads."""
    result = subprocess.run(
        [
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(REPO / "config.yaml"),
            *map(str, configfiles),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    sizes: dict[str, set[tuple[int, int]]] = {}
    threads: dict[str, int] = {}
    rule, gpu = None, None
    for line in result.stdout.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            rule, gpu = match[1], None
            threads.setdefault(rule, 1)  # Snakemake prints "threads:" only above 1
        elif rule and (match := re.match(r"^\s+threads: (\d+)$", line)):
            threads[rule] = max(threads[rule], int(match[1]))
        elif rule and (match := re.search(r"\bresources: .*\bgpu=(\d+)", line)):
            gpu = int(match[1])
        elif rule in TORCH_RULES + FAISS_RULES and (match := re.search(r" --threads (\d+) ", line)):
            sizes.setdefault(rule, set()).add((gpu, int(match[1])))
    return sizes, threads


def test_torch_jobs_ask_for_a_gpu_only_where_the_machine_has_one(tmp_path: Path) -> None:
    """Without a GPU the torch stages are 1-thread CPU jobs that --cores N runs N at a time; with GPUs, gpu=1 each."""
    environment = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    listing = "GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\nGPU 1: NVIDIA H200 (UUID: GPU-bbbb)\n"
    with_gpus = {**environment, "PATH": f"{fake_nvidia_smi(tmp_path / 'bin', listing)}:{environment['PATH']}"}
    sizes, _ = job_threads(tmp_path, with_gpus)
    assert sizes == {rule: {(1, 2)} for rule in TORCH_RULES}
    # The same machine with its GPUs hidden, as CUDA would see it.
    sizes, threads = job_threads(tmp_path, {**with_gpus, "CUDA_VISIBLE_DEVICES": ""})
    assert sizes == {rule: {(0, 1)} for rule in TORCH_RULES}
    # No job asks for more: a 2-thread job waits for both cores to be free at once, which a stream of 1-thread
    # jobs never leaves (compute_idf once waited 53 minutes, and the idf models with it).
    assert {rule for rule, most in threads.items() if most > 1} == set()


def test_faiss_jobs_run_on_the_threads_they_declare(tmp_path: Path) -> None:
    """ANN and compression jobs are 1-thread jobs on a CPU-only machine and pass that cap on to faiss."""
    layered = tmp_path / "ann_and_compression.yaml"
    layered.write_text("retrieval: {modes: [exact, ann]}\ncompression: {bits: [2]}\n")
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    sizes, threads = job_threads(tmp_path / "study", environment, layered)
    assert {rule: sizes.get(rule) for rule in FAISS_RULES} == {rule: {(0, 1)} for rule in FAISS_RULES}
    assert {rule for rule, most in threads.items() if most > 1} == set()


def dry_run_resources(workdir: Path, *arguments: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job of a command-line dry run."""
    result = subprocess.run(
        ["snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *arguments],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    jobs: list[tuple[str, dict[str, str], dict[str, str]]] = []
    for line in result.stdout.splitlines():
        if match := re.match(r"^(?:local)?rule (\w+):$", line):
            jobs.append((match[1], {}, {}))
        elif jobs and (match := re.match(r"^\s+(wildcards|resources): (.*)$", line)):
            pairs = dict(item.split("=", 1) for item in match[2].split(", ") if "=" in item)
            jobs[-1][1 if match[1] == "wildcards" else 2].update(pairs)
    return jobs


def test_a_collection_sizes_its_own_jobs(tmp_path: Path) -> None:
    """MS MARCO's jobs ask for the preset's sizes for that collection; the other collections' for the schema's."""
    preset = yaml.safe_load((REPO / "configs" / "paper-msmarco.yaml").read_text())
    sized = preset["datasets"]["msmarco"]["resources"]
    defaults = {stage: schema_defaults(f"resources.{stage}") for stage in schema_defaults("resources")}
    jobs = dry_run_resources(
        tmp_path, "--configfile", "configs/paper-msmarco.yaml", "--workflow-profile", "profiles/slurm"
    )
    checked = set()
    for rule, wildcards, resources in jobs:
        stage = rule.removesuffix("_shard")
        if stage not in defaults:
            continue
        collection = wildcards.get("corpus") or wildcards.get("dataset")
        expected = {**defaults[stage], **sized.get(stage, {})} if collection == "msmarco" else defaults[stage]
        assert (int(resources["mem_mb"]), int(resources["runtime"])) == (expected["mem_mb"], expected["runtime"]), (
            rule,
            wildcards,
        )
        checked.add((stage, collection == "msmarco"))
    # Every stage the preset sizes was seen for MS MARCO, and the searches and indexes of the BEIR sets too.
    assert {(stage, True) for stage in sized} <= checked
    assert {("index", False), ("retrieve", False), ("evaluate", False)} <= checked


def test_sharded_indexing_dag(tmp_path: Path) -> None:
    overrides = tmp_path / "shards.yaml"
    overrides.write_text("indexing: {shards: 3}\n")
    jobs, _ = dry_run_jobs(tmp_path, "--configfile", "config.yaml", str(overrides), "--cores", "1")
    # 11 models x 2 collections, each index in 3 shard jobs and a merge; 2 post-hoc bases x 2 collections in
    # 3 shard jobs, each of the 8 selections and the base's own index merged.
    assert jobs["index_shard"] == 66 and jobs["posthoc_index_shard"] == 12
    assert jobs["merge_index"] == 22 + 36 and not {"index", "posthoc_index"} & set(jobs)


def test_without_post_hoc_selections_the_index_rule_writes_the_unpruned_indexes(tmp_path: Path) -> None:
    overrides = tmp_path / "controls.yaml"
    overrides.write_text("controls: {posthoc_strategies: [], step0: false}\n")
    jobs, _ = dry_run_jobs(tmp_path, "--configfile", "config.yaml", str(overrides), "--cores", "1")
    # 11 trained models and the untrained backbone on 2 collections, each in an index job of its own.
    assert jobs["index"] == 12 * 2 and "posthoc_index" not in jobs


def test_compression_adds_a_compressed_copy_of_every_dense_index_searched_exactly(tmp_path: Path) -> None:
    overrides = tmp_path / "compression.yaml"
    overrides.write_text("compression: {bits: [2]}\nretrieval: {modes: [exact, ann]}\n")
    jobs, _ = dry_run_jobs(tmp_path, "--configfile", "config.yaml", str(overrides), "--cores", "1")
    # 13 models (11 trained, step 0, untrained) and 16 post-hoc systems on 2 collections: 29 x 2 compressed
    # copies, each searched exactly only (ANN is a float16 index's mode), beside 58 x 2 float16 searches.
    assert jobs["compress_index"] == 29 * 2 and jobs["retrieve_compressed"] == 29 * 2
    assert jobs["retrieve"] == 29 * 2 * 2 and jobs["ann_index"] == 29 * 2


def test_zero_shot_preset_imports_instead_of_training(tmp_path: Path) -> None:
    jobs, _ = dry_run_jobs(tmp_path, "--configfile", "configs/beir-zeroshot.yaml", "--cores", "1")
    assert jobs["import_model"] == 9
    assert not {"train", "mine_negatives", "initial_model"} & set(jobs)
    # IDF comes from each searched collection (indexing.idf_source: indexed), never the training one.
    # 10 models (9 imported, the untrained backbone) on 8 collections; the 2 unpruned ones from their post-hoc pass.
    assert jobs["index"] == 8 * 8 and jobs["posthoc_index"] == 2 * 8
    assert jobs["prepare_data"] == 8 and jobs["compute_idf"] == 8


def test_dry_run_through_the_python_api(tmp_path: Path) -> None:
    dry_run(tmp_path)


def test_typo_in_config_fails_at_dry_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="'strategies\\[0\\]': 'atention' is not one of"):
        dry_run(tmp_path, {"strategies": ["atention"]})


def embedded_files(report: str) -> dict[str, bytes]:
    """The result files a Snakemake HTML report embeds, by file name."""
    pattern = re.compile(r"data:[\w/+.-]+;charset=[\w-]+;filename=([^;]+);base64,([A-Za-z0-9+/=]+)")
    return {name: base64.b64decode(data) for name, data in pattern.findall(report)}


@pytest.mark.slow
def test_tiny_study_runs_into_the_html_report(tiny_report: Path) -> None:
    tmp_path = tiny_report

    summary = tmp_path / "results" / "summary" / "tiny" / "test.exact"
    table = pd.read_csv(summary / "comparison.csv")
    assert list(table["method"]) == [
        "BM25",
        "untrained backbone",
        "ColBERT, step 0",
        "ColBERT (no pruning)",
        "first",
        "attention",
        "first (post-hoc)",
        "attention (post-hoc)",
        "idf (post-hoc)",
        "pool (post-hoc)",
        "first (post-hoc, untrained)",
        "attention (post-hoc, untrained)",
        "idf (post-hoc, untrained)",
        "pool (post-hoc, untrained)",
    ]
    contrast = pd.read_csv(summary / "inloop_vs_posthoc.csv")
    assert sorted(contrast["strategy"]) == ["attention", "attention", "first", "first"]  # 2 strategies x 2 measures
    assert table.loc[table["method"] == "first", "k"].item() == 4
    files = embedded_files((tmp_path / "reports" / "report.html").read_text(encoding="utf-8"))
    assert {
        "comparison.html",
        "comparison.csv",
        "index_size_vs_nDCG_10.png",
        "index_size_vs_RR_10.png",
        "training_loss.png",
        "kept_positions.png",
        "kept_tokens.png",
    } <= set(files)
    comparison = files["comparison.html"].decode("utf-8")
    assert "<caption>tiny test, exact retrieval</caption>" in comparison
    for method in table["method"]:
        assert f"<td>{method}</td>" in comparison
    assert f"{table.loc[table['method'] == 'first', 'nDCG@10'].item():.3f}" in comparison
    assert files["index_size_vs_nDCG_10.png"] == (summary / "index_size_vs_nDCG_10.png").read_bytes()
    assert files["index_size_vs_nDCG_10.png"].startswith(b"\x89PNG")
    # The page the report opens on carries the headline table, the in-loop vs post-hoc tests and the figure.
    opening = (tmp_path / "reports" / "report.html").read_text(encoding="utf-8")
    assert "The answer on tiny test" in opening
    assert "In the training loop vs post hoc" in opening
    figure = base64.b64encode((summary / "index_size_vs_nDCG_10.png").read_bytes()).decode()
    assert figure[:200] in opening

    indexes = tmp_path / "results" / "indexes"
    merged = indexes / "tiny" / "first" / "k4" / "seed1" / "tiny"
    manifest = json.loads((merged / "manifest.json").read_text())
    assert [shard["documents"] for shard in manifest["shards"]] == [8, 8]
    # The baseline's own index comes from its post-hoc pass, shard by shard, not from an encoding pass of its own.
    own = json.loads((indexes / "tiny" / "none" / "kall" / "seed1" / "tiny" / "manifest.json").read_text())
    assert [shard["documents"] for shard in own["shards"]] == [8, 8]
    assert not (tmp_path / "logs" / "index" / "tiny" / "none").exists()
    assert not list(indexes.rglob("*.shards")), "shard outputs are temporary and removed once merged"


def test_seed_spread_preset(tmp_path: Path) -> None:
    jobs, _ = dry_run_jobs(tmp_path, "--configfile", "config.yaml", "configs/seeds.yaml", "--cores", "1")
    # (baseline + 5 strategies at k=50) x 3 seeds; a step-0 model per seed; post-hoc from each seed's baseline.
    assert jobs["train"] == 6 * 3 and jobs["initial_model"] == 3
    assert jobs["posthoc_index"] == (3 + 1) * 2  # 3 trained baselines and the untrained backbone, 2 collections


def test_families_preset_trains_each_family_where_it_has_a_form(tmp_path: Path) -> None:
    """const only in the loop, static only post hoc, variable budgets both ways, PLAID-sized 2- and 4-bit codecs."""
    result = subprocess.run(
        ["snakemake", "-n", "--cores", "1", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path)]
        + ["--configfile", "config.yaml", "configs/families.yaml"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    commands = [line.removeprefix("Shell command: ") for line in result.stdout.splitlines() if "Shell command:" in line]
    trained = {re.search(r"--strategy (\w+)", c)[1] for c in commands if c.startswith("tokenprune train ")}
    assert trained == {"none", "first", "idf", "unused", "attention", "pool", "const", "attention_var", "pool_var"}
    post_hoc = {
        strategy
        for c in commands
        if c.startswith("tokenprune posthoc-index ")
        for strategy in re.findall(r"--selection (\w+)", c)
    }
    assert post_hoc == {"first", "idf", "attention", "pool", "attention_var", "pool_var", "static"}
    trainings = [c for c in commands if c.startswith("tokenprune train ")]
    assert len(trainings) == (1 + 8 * 2) * 3  # the baseline and 8 strategies at 2 budgets, 3 seeds
    codecs = [c for c in commands if c.startswith("tokenprune compress-index ")]
    assert codecs and all("--centroids plaid" in c for c in codecs)
    assert {re.search(r"--bits (\d)", c)[1] for c in codecs} == {"2", "4"}


@pytest.mark.slow
@pytest.mark.parametrize("width", [1280, 1600, 1920])
def test_the_report_opens_at_its_top_on_the_answer_with_nothing_overlapping(tiny_report: Path, width: int) -> None:
    """In headless Chromium: the page opens at its top; the verdicts, the headline table, the
    trade-off figure and the full tables come in that order; the rule graph covers none of them."""
    from report_browser import chromium, measure_opening_page, overlaps

    browser = chromium()
    if browser is None:
        pytest.skip("no chromium (Debian's package) and no root to install it with apt")
    page = measure_opening_page(browser, tiny_report / "reports" / "report.html", width)
    assert page["scrollTop"] == 0 and 0 <= page["heading"]["top"] < 200
    kinds = [(item["kind"], item["classes"]) for item in page["items"]]
    tops = [item["box"]["top"] for item in page["items"]]
    assert tops == sorted(tops)
    assert kinds[:4] == [
        ("table", "comparison verdicts"),
        ("table", "comparison headline"),
        ("img", ""),
        ("table", "comparison"),
    ], kinds
    for item in page["items"]:
        assert not overlaps(item["visible"], page["graph"]), (width, item["kind"], item["classes"])
        assert item["visible"]["right"] <= page["width"], (width, item["kind"], item["classes"])
