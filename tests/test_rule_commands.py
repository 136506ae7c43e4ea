"""Every `tokenprune` command the rules run passes each option that has a default of its own, and
every option a rule always passes is required by the CLI.

The schema owns every default. An option the CLI defaults but a rule leaves out is a second default: it
silently wins over the config the moment the two differ (a `train.split` other than "train", an
`irds_home` other than resources/ir_datasets). The test walks the shell command of every job Snakemake
plans for the default config and for the presets, and parses each with the real command-line parser.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from tokenprune.cli import build_parser

# Options a rule may leave to the CLI, because they are not study settings: nothing in the config owns them.
NOT_CONFIG_VALUES = {
    # Which device a job runs on is the scheduler's business; "auto" claims a free GPU or falls back to the CPU.
    "--device",
    # An unsharded index job is shard 0 of 1; the sharded rules pass both.
    "--shards",
    "--shard",
}


# Options without a default that rules pass only in some studies or jobs: leaving them out is a mode of the
# command, not a fallback. Every other option a rule passes is required, so a rule that dropped one fails.
OPTIONAL_BY_MODE = {
    ("index", "--idf"): "only the idf strategy reads IDF",
    ("train", "--idf"): "only the idf strategy reads IDF",
    ("posthoc-index", "--idf"): "only a post-hoc idf selection reads IDF",
    ("posthoc-index", "--own-index"): "an extra output: the unpruned index from the same encoding pass",
    ("retrieve", "--ann-index"): "only --mode ann",
    ("retrieve", "--nprobe"): "only --mode ann",
    ("retrieve", "--candidates-per-token"): "only --mode ann",
    ("mine-negatives", "--docpairs-irds-id"): "official triples instead of mined BM25 negatives",
    ("summarize", "--paper-collection"): "only collections the paper reports",
    # prepare-data reads a dataset's entry either from --config or from --spec and these options.
    ("prepare-data", "--spec"): "the alternative to --config",
    ("prepare-data", "--backbone"): "from the config with --config",
    ("prepare-data", "--irds-home"): "from the config with --config",
    ("prepare-data", "--passage-max-length"): "only sizes a report line",
    ("prepare-data", "--query-max-length"): "only sizes a report line",
    # A figure's title is a caption, not a study setting.
    ("plot-tradeoff", "--title"): "caption",
    ("plot-training", "--title"): "caption",
    ("token-diagnostics", "--title"): "caption",
}


def planned_commands(workdir: Path, *configfiles: str) -> list[list[str]]:
    """The argument lists of every `tokenprune` command in a dry run, one per distinct command line."""
    result = subprocess.run(
        [
            "snakemake",
            "-n",
            "--cores",
            "1",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            *configfiles,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    commands = []
    for line in dict.fromkeys(result.stdout.splitlines()):
        if match := re.match(r"^Shell command: tokenprune (.*)$", line):
            words = shlex.split(match[1])
            commands.append(words[: words.index(">")] if ">" in words else words)
    return commands


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def second_defaults(arguments: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Options of ``parser`` with a default of their own: left out by ``arguments``, or passed by it yet defaulted."""
    passed = {word.split("=")[0] for word in arguments if word.startswith("--")}
    exclusive_passed = {
        action.dest
        for group in parser._mutually_exclusive_groups
        if any(set(a.option_strings) & passed for a in group._group_actions)
        for action in group._group_actions
    }
    left_out = []
    for action in parser._actions:
        if not action.option_strings or action.required or isinstance(action, argparse._HelpAction):
            continue
        if action.default in (None, False, argparse.SUPPRESS) or action.dest in exclusive_passed:
            continue
        if set(action.option_strings) & NOT_CONFIG_VALUES:
            continue
        given = "passed, yet" if set(action.option_strings) & passed else "left out, so"
        left_out.append(f"{action.option_strings[-1]} ({given} the CLI defaults it to {action.default!r})")
    return left_out


@pytest.mark.parametrize(
    "configfiles",
    [
        ("config.yaml",),
        ("configs/paper-msmarco.yaml",),
        ("configs/beir-zeroshot.yaml",),
        ("config.yaml", "configs/seeds.yaml"),
        ("config.yaml", "configs/seeds-k10.yaml"),
        ("config.yaml", "configs/compression.yaml"),
        ("config.yaml", "configs/families.yaml"),
    ],
    ids=["default", "paper", "beir-zeroshot", "seeds", "seeds-k10", "compression", "families"],
)
def test_rules_pass_every_option_the_cli_defaults(tmp_path: Path, configfiles: tuple[str, ...]) -> None:
    parsers = subcommand_parsers()
    commands = planned_commands(tmp_path, *configfiles)
    assert {"train", "index", "retrieve", "evaluate", "summarize"} <= {c[0] for c in commands} or configfiles == (
        "configs/beir-zeroshot.yaml",
    )
    problems = set()
    for arguments in commands:
        name, options = arguments[0], arguments[1:]
        parsers[name].parse_args(options)  # the command as written parses
        problems.update(f"tokenprune {name}: {option}" for option in second_defaults(options, parsers[name]))
        problems.update(f"tokenprune {name}: {option}" for option in hidden_fallbacks(name, options, parsers[name]))
    assert not problems, "rules leave these to a second default:\n" + "\n".join(sorted(problems))


def hidden_fallbacks(name: str, arguments: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Options defaulting to None that ``arguments`` pass, yet the CLI does not require: dropped from a rule,
    the command would still run, on a fallback of its own (all cores for --threads)."""
    passed = {word.split("=")[0] for word in arguments if word.startswith("--")}
    return [
        f"{action.option_strings[-1]} (passed, yet optional with a None default)"
        for action in parser._actions
        if set(action.option_strings) & passed
        and not action.required
        and action.default is None
        and (name, action.option_strings[-1]) not in OPTIONAL_BY_MODE
        and not set(action.option_strings) & NOT_CONFIG_VALUES
    ]


def test_a_rule_that_drops_threads_is_caught() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int)
    parser.add_argument("--idf")
    assert hidden_fallbacks("index", ["--threads", "1", "--idf", "x"], parser) == [
        "--threads (passed, yet optional with a None default)"
    ]
