"""The conda environments of the rules agree with pyproject.toml, and the workflow passes
Snakemake's linter and snakefmt."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from conftest import REPO

# conda-forge names of packages that PyPI spells differently.
CONDA_TO_PYPI = {"pytorch": "torch"}
# Conda-only entries with no PyPI counterpart in pyproject.toml.
CONDA_ONLY = {
    "python",
    "pip",
    "pytorch-cuda",
}  # pytorch-cuda selects conda's CUDA build; pip's torch carries CUDA itself
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, str]:
    """``"torch>=2.2"`` -> ``("torch", ">=2.2")`` with the name normalised."""
    match = REQUIREMENT.match(text.replace(" ", ""))
    assert match, text
    name = normalise(CONDA_TO_PYPI.get(match[1], match[1]))
    return name, match[2]


# conda-forge has had faiss-gpu since 1.8; PyPI's wheels (the `gpu` extra) start at 1.14.3.
CONDA_FLOORS = {"faiss-gpu": ">=1.8"}


def project_requirements() -> dict[str, str]:
    """The dependencies and the faiss extras (``cpu``, ``gpu``) of pyproject.toml, environment markers dropped."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    lines = [*project["dependencies"], *extras["cpu"], *extras["gpu"]]
    return dict(parse_requirement(line.split(";")[0]) for line in lines)


def environment_requirements(path: Path) -> tuple[dict[str, str], list[str]]:
    """Requirements of one env file (conda and pip sections together) and its pip lines verbatim."""
    environment = yaml.safe_load(path.read_text())
    requirements, pip_lines = {}, []
    for entry in environment["dependencies"]:
        lines = entry["pip"] if isinstance(entry, dict) else [entry]
        for line in lines:
            if isinstance(entry, dict):
                pip_lines.append(line)
            if line.startswith("-e "):
                continue
            # conda pins a single version with "=", pip with "==".
            name, specifier = parse_requirement(re.sub(r"(?<![<>=!])=(?!=)", "==", line))
            if name not in CONDA_ONLY:
                requirements[name] = specifier
    return requirements, pip_lines


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda path: path.name)
def test_environment_versions_match_pyproject(path: Path) -> None:
    project = project_requirements()
    requirements, pip_lines = environment_requirements(path)
    assert requirements, f"{path.name} lists no packages"
    for name, specifier in requirements.items():
        assert name in project, f"{path.name}: {name} is not a dependency in pyproject.toml"
        if name in CONDA_FLOORS:
            assert specifier == CONDA_FLOORS[name], f"{path.name}: {name}{specifier}"
            continue
        assert specifier == project[name], f"{path.name}: {name}{specifier}, pyproject.toml says {name}{project[name]}"
    # The rules call the tokenprune command, so every environment installs the project itself.
    assert "-e ../" in pip_lines, f"{path.name} does not install tokenprune (-e ../)"


def test_every_rule_environment_exists() -> None:
    referenced = set()
    for rules_file in (REPO / "workflow" / "rules").glob("*.smk"):
        referenced |= set(re.findall(r'conda:\s*\n\s*"([^"]+)"', rules_file.read_text()))
    assert referenced == {"../../envs/data.yaml", "../../envs/train.yaml", "../../envs/report.yaml"}
    # The indexing and retrieval rules name RETRIEVAL_ENV: the GPU file where the machine has a GPU.
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    retrieval = set(re.findall(r'RETRIEVAL_ENV = \(\s*"([^"]+)" if LOCAL_GPUS else "([^"]+)"', common)[0])
    assert retrieval == {"../../envs/retrieval-gpu.yaml", "../../envs/retrieval.yaml"}
    referenced |= retrieval
    for relative in referenced:
        assert (REPO / "workflow" / "rules" / relative).resolve().is_file(), relative


def test_snakemake_lint_is_clean(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--lint",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--configfile",
            str(REPO / "config.yaml"),
            "--directory",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, (
        result.stdout + result.stderr
    )[-3000:]


def test_snakefmt_check_is_clean() -> None:
    snakefmt = shutil.which("snakefmt") or pytest.fail("snakefmt is not installed (pip install -e '.[cpu,test]')")
    files = [str(REPO / "Snakefile"), *map(str, sorted((REPO / "workflow" / "rules").glob("*.smk")))]
    result = subprocess.run([snakefmt, "--check", *files], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cpu_and_gpu_environments_install_one_faiss_each() -> None:
    """faiss-cpu and faiss-gpu install the same package, so no environment (or extra) lists both."""
    cpu, _ = environment_requirements(REPO / "envs" / "retrieval.yaml")
    gpu, _ = environment_requirements(REPO / "envs" / "retrieval-gpu.yaml")
    assert "faiss-cpu" in cpu and "faiss-gpu" not in cpu
    assert "faiss-gpu" in gpu and "faiss-cpu" not in gpu
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, lines in [("dependencies", project["dependencies"]), *project["optional-dependencies"].items()]:
        faiss = {parse_requirement(line.split(";")[0])[0] for line in lines} & {"faiss-cpu", "faiss-gpu"}
        assert len(faiss) <= 1, f"pyproject.toml {name} lists {sorted(faiss)}"
