"""Golden vectors for the boot self-test (convert/golden.py): enough, telling rows, checked
bit-exactly, so a board running the model on the wrong library fails at boot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import make_classification_csv, small_config
from tinyship.config import Config
from tinyship.convert import golden, runtimes
from tinyship.convert.tflite_info import inspect_model
from tinyship.registry import Registry


def _golden_from_c(vdir: Path, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """The golden arrays as the firmware embeds them (the generated .cc)."""
    text = (vdir / "firmware" / "tinyship_model_data.cc").read_text()

    def array(name: str) -> np.ndarray:
        body = re.search(name + r"\[[^]]*\] = \{([^}]*)\}", text)
        assert body is not None, name
        return np.array([int(v) for v in body.group(1).replace("\n", " ").split(",")
                         if v.strip()], dtype=np.int8)

    return (array("tinyship_golden_inputs").reshape(-1, n_in),
            array("tinyship_golden_outputs").reshape(-1, n_out))


def _old_pick(y: np.ndarray, k: int) -> np.ndarray:
    """The rule before: k test rows spread over the sorted target."""
    order = np.argsort(y, kind="stable")
    picked: np.ndarray = order[np.linspace(0, len(order) - 1, min(k, len(order))).round()
                               .astype(int)]
    return picked


def _self_test_fails(device: np.ndarray, want: np.ndarray, tolerance: int) -> bool:
    """The core's rule: fail if any output differs from the golden one by more."""
    return bool((np.abs(device.astype(int) - want.astype(int)) > tolerance).any())


# --- selection rules on synthetic outputs ---------------------------------------------------


def _softmaxish(rng: np.random.Generator, n: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(0, 4, (n, classes))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ref = np.clip(np.round(p * 256) - 128, -128, 127).astype(np.int8)
    return ref, rng.integers(0, classes, n)


def test_classification_covers_every_class_and_the_boundary_rows() -> None:
    rng = np.random.default_rng(0)
    ref, labels = _softmaxish(rng, 300, 5)
    xq = rng.integers(-128, 128, (300, 6)).astype(np.int8)
    rows = golden.pick_golden(xq, ref, task="classification", k=32, labels=labels)
    assert len(rows) == len(set(rows.tolist())) == 32
    assert set(np.argmax(ref[rows], axis=1)) == set(np.argmax(ref, axis=1))
    assert set(labels[rows]) == set(labels)
    ordered = np.sort(ref.astype(int), axis=1)
    margin = ordered[:, -1] - ordered[:, -2]
    assert set(np.argsort(margin, kind="stable")[:5]) <= set(rows.tolist())
    assert int(np.argmax(np.abs(xq.astype(int)).sum(axis=1))) in rows
    more = golden.pick_golden(xq, ref, task="classification", k=64, labels=labels)
    for f in range(xq.shape[1]):  # every feature's extremes, given room
        assert xq[more, f].min() == xq[:, f].min() and xq[more, f].max() == xq[:, f].max()
    again = golden.pick_golden(xq, ref, task="classification", k=32, labels=labels)
    assert np.array_equal(rows, again)


def test_regression_spans_the_output_range_and_takes_fault_rows() -> None:
    rng = np.random.default_rng(1)
    xq = rng.integers(-128, 128, (200, 4)).astype(np.int8)
    ref = rng.integers(-100, 100, (200, 1)).astype(np.int8)
    fault = ref.copy()
    fault[[17, 113]] += 3
    rows = golden.pick_golden(xq, ref, task="regression", k=16, fault_outputs=[fault])
    assert len(rows) == 16
    assert ref[rows].min() == ref.min() and ref[rows].max() == ref.max()
    assert {17, 113} <= set(rows.tolist())


def test_count_is_capped_by_rows_and_flash() -> None:
    rng = np.random.default_rng(2)
    ref, _ = _softmaxish(rng, 10, 3)
    assert len(golden.pick_golden(rng.integers(-128, 128, (10, 4)).astype(np.int8), ref,
                                  task="classification", k=32)) == 10
    big = rng.integers(-128, 128, (100, 27648)).astype(np.int8)  # a 96x96x3 image
    ref, _ = _softmaxish(rng, 100, 2)
    assert len(golden.pick_golden(big, ref, task="classification", k=32)) == 1  # > 16 KiB
    assert len(golden.pick_golden(big[:, :1000], ref, task="classification", k=32)) == 16
    assert golden.golden_count(32, 5, 8, 1) == 5 and golden.golden_count(0, 5, 8, 1) == 1


def test_config_default_and_limit() -> None:
    from pydantic import ValidationError

    from tinyship.config import QuantizationSection

    assert QuantizationSection().golden_vectors == 32
    assert QuantizationSection(golden_vectors=128).golden_vectors == 128
    with pytest.raises(ValidationError):
        QuantizationSection(golden_vectors=129)


# --- a per-channel model on a per-tensor library --------------------------------------------


@pytest.fixture(scope="module")
def per_channel_classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, str]:
    """A 3-class classifier quantized per channel (profile tflm-current); with this seed
    its confident rows saturate, so a per-tensor library changes few outputs."""
    from tinyship.pipeline import run_pipeline

    tmp = tmp_path_factory.mktemp("golden")
    cfg = small_config(tmp, make_classification_csv(tmp / "c.csv"), task="classification",
                       quantization={"profile": "tflm-current"}, training={"seed": 2})
    result = run_pipeline(cfg)
    assert result.version is not None
    return cfg, result.version


def test_per_tensor_misread_reads_the_first_channel_scale(
    per_channel_classifier: tuple[Config, str],
) -> None:
    from tinyship.convert.tflite_info import _schema

    cfg, version = per_channel_classifier
    model = (Registry(cfg.registry_path).path(version) / "model_int8.tflite").read_bytes()
    misread = golden.per_tensor_misread(model)
    assert misread is not None and golden.per_tensor_misread(misread) is None
    assert inspect_model(model).per_channel_dense > 0 == inspect_model(misread).per_channel_dense
    schema = _schema()
    for before, after in zip(schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
                             .subgraphs[0].tensors,
                             schema.ModelT.InitFromPackedBuf(bytearray(misread), 0)
                             .subgraphs[0].tensors, strict=True):
        if before.quantization is not None and before.quantization.scale is not None:
            assert after.quantization.scale[0] == before.quantization.scale[0]


def test_wrong_library_fails_the_boot_self_test(
    per_channel_classifier: tuple[Config, str],
) -> None:
    """The golden vectors the pipeline embedded, run as a per-tensor library runs this
    per-channel model, differ from the golden outputs (tolerance 0); so do the rows the
    rule picks without knowing the fault. The old choice (4 rows spread over the labels,
    1 LSB) passes that board."""
    cfg, version = per_channel_classifier
    reg = Registry(cfg.registry_path)
    vdir = reg.path(version)
    model = (vdir / "model_int8.tflite").read_bytes()
    info = inspect_model(model)
    misread = golden.per_tensor_misread(model)
    assert misread is not None
    arena = 4 * reg.manifest(version)["model"]["arena_bytes"]

    gi, go = _golden_from_c(vdir, info.inputs[0].size, info.outputs[0].size)
    assert len(gi) == 32
    assert np.array_equal(runtimes.run_tflm(model, gi, arena), go)  # the right library
    assert _self_test_fails(runtimes.run_tflm(misread, gi, arena), go, 0)

    ts = np.load(vdir / "test_set.npz")
    xq, ref, y = ts["x_int8"], ts["reference_int8"], ts["y"]
    wrong = runtimes.run_tflm(misread, xq, arena)
    blind = golden.pick_golden(xq, ref, task="classification", k=32,
                               input_zero_point=info.inputs[0].zero_point, labels=y)
    assert _self_test_fails(wrong[blind], ref[blind], 0)

    old = _old_pick(y, 4)
    assert not _self_test_fails(wrong[old], ref[old], 1)
    assert (np.abs(wrong.astype(int) - ref.astype(int)).max(axis=1) > 0).sum() > 0


def test_registered_golden_vectors_are_bit_exact(trained_registry: tuple[Config, str]) -> None:
    """The reference is exact (harmonized model), so the host runtime reproduces every
    golden output with tolerance 0; the default count is embedded."""
    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    vdir = reg.path(version)
    model = (vdir / "model_int8.tflite").read_bytes()
    info = inspect_model(model)
    gi, go = _golden_from_c(vdir, info.inputs[0].size, info.outputs[0].size)
    assert len(gi) == min(32, reg.manifest(version)["metrics"]["test_rows"])
    out = runtimes.run_tflm(model, gi, reg.manifest(version)["model"]["arena_bytes"])
    assert not _self_test_fails(out, go, 0)
    header = (vdir / "firmware" / "tinyship_model_data.h").read_text()
    assert f"#define TINYSHIP_GOLDEN_COUNT {len(gi)}" in header
