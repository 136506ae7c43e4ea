"""The ``tokenprune`` console script: every pipeline stage as a sub-command.

The Snakemake rules call these sub-commands; users can run any stage on its
own with the same arguments. User errors are printed as one line and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tokenprune.errors import TokenpruneError

log = logging.getLogger("tokenprune")

Handler = Callable[[argparse.Namespace], None]
COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], Callable]:
    """Register a sub-command: decorate its argument builder, and give its handler as ``.run``."""

    def register(build: Callable[[argparse.ArgumentParser], None]) -> Callable:
        def set_handler(handler: Handler) -> Handler:
            COMMANDS[name] = (handler, build, help_text)
            return handler

        build.run = set_handler  # type: ignore[attr-defined]
        return build

    return register


def _dataset_entry(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """The dataset's config entry and the whole config, from ``--spec`` JSON or ``--config`` + ``--dataset``."""
    if args.spec:
        try:
            entry = json.loads(args.spec)
        except json.JSONDecodeError as error:
            raise TokenpruneError(f"--spec is not valid JSON: {error}") from None
        return entry, {}
    from tokenprune.config import load_config

    config = load_config(args.config)
    if args.dataset not in config["datasets"]:
        raise TokenpruneError(f"dataset {args.dataset!r} is not in {args.config}; choose from {sorted(config['datasets'])}")
    return config["datasets"][args.dataset], config


@command("prepare-data", "Normalise a collection (BEIR folder or ir_datasets id) and write its statistics.")
def _prepare_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="Dataset name (a key of 'datasets' in the config).")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", default="config.yaml", help="Config file to read the dataset from (default: config.yaml).")
    source.add_argument("--spec", help="The dataset's config entry as JSON, instead of reading --config.")
    parser.add_argument("--output", required=True, type=Path, help="Folder to write (replaced atomically).")
    parser.add_argument("--backbone", help="Backbone whose tokenizer measures lengths (default: the config's, or 'embedded').")
    parser.add_argument("--data-dir", help="Offline data folder (default: $TOKENPRUNE_DATA_DIR, then the config's).")
    parser.add_argument("--irds-home", type=Path, help="IR_DATASETS_HOME (default: the config's irds_home).")
    parser.add_argument("--strict", action="store_true", help="Fail when qrels name unknown queries or documents.")
    parser.add_argument("--passage-max-length", type=int, help="Report the share of passages longer than this.")
    parser.add_argument("--query-max-length", type=int, help="Report the share of queries longer than this.")
    parser.add_argument("--batch-size", type=int, default=4096, help="Documents per written batch.")


@_prepare_data_arguments.run
def _prepare_data(args: argparse.Namespace) -> None:
    entry, config = _dataset_entry(args)
    irds_home = (args.irds_home or Path(config.get("irds_home", "resources/ir_datasets"))).resolve()
    irds_home.mkdir(parents=True, exist_ok=True)
    # ir_datasets fixes its cache location when first imported.
    os.environ["IR_DATASETS_HOME"] = str(irds_home)

    from tokenprune.backbone import load_tokenizer
    from tokenprune.data import DatasetSpec, prepare_dataset
    from tokenprune.data.sources import offline_data_dir, open_collection

    model = config.get("model", {})
    spec = DatasetSpec.from_config(args.dataset, entry)
    data_dir = offline_data_dir(args.data_dir or config.get("offline_data_dir"))
    source = open_collection(spec, data_dir, irds_home)
    log.info("reading %s", source.description)
    stats = prepare_dataset(
        spec,
        source,
        args.output,
        load_tokenizer(args.backbone or model.get("backbone", "embedded")),
        strict=args.strict or bool(config.get("strict_qrels")),
        batch_size=args.batch_size,
        passage_max_length=args.passage_max_length or model.get("passage_max_length"),
        query_max_length=args.query_max_length or entry.get("query_max_length") or model.get("query_max_length"),
    )
    splits = ", ".join(f"{name}: {s['queries']} queries / {s['judgments']} judgments" for name, s in stats["splits"].items())
    log.info("%s: %d documents; %s", spec.name, stats["documents"], splits)


# Stages whose sub-command lands with a later issue. They fail loudly and
# write nothing, so the DAG is complete but never produces a fake result.
PENDING_STAGES = {"index": 4, "retrieve": 4, "evaluate": 4, "report": 5}


def _pending(name: str, issue: int) -> None:
    def build(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> None:
        raise TokenpruneError(f"the {name!r} stage is not implemented yet (issue #{issue}); nothing was written")

    COMMANDS[name] = (run, build, f"(not implemented yet: issue #{issue})")


for _name, _issue in PENDING_STAGES.items():
    _pending(_name, _issue)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tokenprune", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, build, help_text) in COMMANDS.items():
        build(subcommands.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; user errors exit 2 with a one-line message."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler = COMMANDS[args.command][0]
    try:
        handler(args)
    except TokenpruneError as error:
        print(f"tokenprune {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
