"""Precision selection, and bf16 encoding and training against fp32."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_search import corpus, small_model  # noqa: F401 - the module-scoped corpus fixture
from tokenprune import precision as precision_module
from tokenprune.errors import TokenpruneError
from tokenprune.index import PrunedIndex, build_index
from tokenprune.precision import autocast, cpu_has_native_bf16, resolve_precision
from tokenprune.training import TrainingSettings

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("flags_line", "native"),
    [
        ("flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("flags\t\t: fpu sse2 avx2 amx_tile amx_bf16", True),
        ("Features\t: fp asimd bf16 i8mm", True),  # Arm
        ("flags\t\t: fpu sse2 avx2 avx512f avx512bw", False),  # AVX-512 without bf16: emulated, slower than fp32
        ("model name\t: bf16 in a name is not a flag", False),
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, flags_line, native) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\n{flags_line}\n\n")
    assert cpu_has_native_bf16(cpuinfo) is native


def test_no_cpuinfo_means_no_native_bf16(tmp_path) -> None:
    assert cpu_has_native_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_the_cpu_follows_native_bf16(monkeypatch, native) -> None:
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    expected = "bf16" if native else "fp32"
    assert resolve_precision("auto", CPU, "encoding") == resolve_precision("auto", CPU, "training") == expected
    # An explicit choice is taken as given.
    assert resolve_precision("fp32", CPU, "encoding") == "fp32"
    assert resolve_precision("bf16", CPU, "training") == "bf16"


def test_unsupported_precisions_are_refused_by_name() -> None:
    with pytest.raises(
        TokenpruneError, match=r"precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'half'"
    ):
        resolve_precision("half", CPU, "encoding")
    with pytest.raises(TokenpruneError, match="'fp16' is not supported for the CPU; use 'bf16' or 'fp32'"):
        resolve_precision("fp16", CPU, "encoding")
    with pytest.raises(TokenpruneError, match=r"'fp16' is not supported for training \(it would need loss scaling\)"):
        resolve_precision("fp16", torch.device("cuda"), "training")
    with pytest.raises(TokenpruneError, match=r"training.precision must be one of .*, got 'float16'"):
        TrainingSettings(precision="float16")


def test_autocast_runs_products_in_the_resolved_type() -> None:
    weight = torch.randn(4, 4)
    with autocast(CPU, "bf16"):
        assert (weight @ weight).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (weight @ weight).dtype == torch.float32


def test_bf16_index_keeps_the_fp32_selection_and_close_vectors(corpus, tmp_path) -> None:  # noqa: F811
    model = small_model("first", 10)
    for name in ("fp32", "bf16"):
        build_index(model, corpus, tmp_path / name, batch_size=5, chunk_documents=16, precision=name)
    full, half = PrunedIndex(tmp_path / "fp32"), PrunedIndex(tmp_path / "bf16")
    assert full.stats["encoding_precision"] == "fp32" and half.stats["encoding_precision"] == "bf16"
    assert json.loads((tmp_path / "bf16" / "index_stats.json").read_text())["encoding_precision"] == "bf16"
    # first keeps positions, not values: the same tokens, whatever the rounding.
    assert full.offsets.tolist() == half.offsets.tolist()
    positions = [np.fromfile(index.component_files("positions.i16")[0], dtype=np.int16) for index in (full, half)]
    assert np.array_equal(*positions)
    a = np.asarray(full.vectors, dtype=np.float32)
    b = np.asarray(half.vectors, dtype=np.float32)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999
    assert not np.array_equal(a, b)  # bf16 did run: its rounding shows
