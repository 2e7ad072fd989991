"""Golden vectors for the boot self-test: test rows on which a wrong runtime shows itself.

A self-test passes a wrong runtime when its vectors sit where errors cannot show: a
confident classifier's softmax saturates (0 or 255), so a runtime that misreads every
weight scale still answers -128/127 there. The rows chosen here are the ones a wrong
runtime gets wrong first: every output exercised (each class near its decision boundary and
when confident; the regression range end to end), the rows closest to a decision boundary
(unsaturated outputs, where a 1-LSB error already shows), and the rows with the largest
and most extreme inputs (largest accumulators, clamped activations, where a wrong
multiplier or zero point grows). Known faults can add the rows they change most (see
`per_tensor_misread`). The host reference is bit-exact (convert/arith.py), so the board
compares with tolerance 0.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

#: Flash budget for the golden arrays (inputs + outputs, int8): caps the count for large
#: inputs (an image model) so the C export stays small.
GOLDEN_MAX_BYTES = 16 * 1024


def golden_count(k: int, n_rows: int, input_size: int, output_size: int) -> int:
    """How many vectors to embed: `k`, at most the test rows and the flash budget, >= 1."""
    per_vector = max(1, input_size + output_size)
    return max(1, min(k, n_rows, GOLDEN_MAX_BYTES // per_vector))


def _margins(reference: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 output per row (int8 units); small = near a decision boundary."""
    ordered = np.sort(reference.astype(np.int64), axis=1)
    margin: np.ndarray = ordered[:, -1] - ordered[:, -2]
    return margin


def _coverage(reference: np.ndarray, classification: bool, labels: np.ndarray | None,
              budget: int) -> list[int]:
    """Rows that exercise every output: per class its least and most confident row (and a
    row of every true class); for regression, the output range end to end."""
    n = len(reference)
    if classification and reference.shape[1] >= 2:
        pred = np.argmax(reference, axis=1)
        margin = _margins(reference)
        near: list[int] = []
        far: list[int] = []
        for c in range(reference.shape[1]):
            rows = np.flatnonzero(pred == c)
            if rows.size:
                order = rows[np.lexsort((rows, margin[rows]))]
                near.append(int(order[0]))
                far.append(int(order[-1]))
        true_class: list[int] = []
        if labels is not None:
            for c in np.unique(labels):
                rows = np.flatnonzero(labels == c)
                wrong = rows[pred[rows] != c]
                pick = wrong if wrong.size else rows
                true_class.append(int(pick[np.lexsort((pick, margin[pick]))][0]))
        return (near + true_class + far)[: max(budget, reference.shape[1])]
    order = np.lexsort((np.arange(n), reference.astype(np.int64).sum(axis=1)))
    m = min(budget, n)
    return [int(order[i]) for i in np.linspace(0, n - 1, m).round().astype(int)] if m else []


def _refining(n: int) -> list[int]:
    """0..n-1 in the order 0, n-1, middle, quarters, eighths, ...: any prefix is spread
    over the whole range."""
    out: list[int] = []
    seen: set[int] = set()
    level = 0
    while len(out) < n:
        parts = 1 << level
        for i in range(0, parts + 1) if level == 0 else range(1, parts, 2):
            j = round(i * (n - 1) / parts)
            if j not in seen:
                seen.add(j)
                out.append(j)
        level += 1
    return out


def _extremes(xq: np.ndarray, input_zero_point: int) -> list[int]:
    """The row with the largest |input - zero point| (largest accumulators), each
    feature's smallest and largest row, then the rest by that size."""
    x = xq.reshape(len(xq), -1).astype(np.int64)
    by_size = [int(i) for i in np.lexsort((np.arange(len(x)), -np.abs(
        x - input_zero_point).sum(axis=1)))]
    rows = by_size[:1]
    for f in range(x.shape[1]):
        rows += [int(np.argmin(x[:, f])), int(np.argmax(x[:, f]))]
    return rows + by_size[1:]


def pick_golden(
    xq: np.ndarray,
    reference: np.ndarray,
    *,
    task: str,
    k: int,
    input_zero_point: int = 0,
    labels: np.ndarray | None = None,
    fault_outputs: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """Indices of the test rows to embed as golden vectors, most telling first.

    `xq`/`reference`: the int8 test inputs and the host TFLM outputs; `labels`: true
    classes (classification); `fault_outputs`: outputs of emulated wrong runtimes on the
    same rows, whose most-changed rows are taken too. Half the count goes to coverage
    (every output), the rest round-robin to faults, boundary rows, extreme inputs and rows
    spread over the outputs. Deterministic: same rows for the same data.
    """
    ref = np.asarray(reference).reshape(len(reference), -1)
    n = len(ref)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    count = golden_count(k, n, int(np.asarray(xq[0]).size), ref.shape[1])
    classification = task == "classification"
    chosen: list[int] = []
    seen: set[int] = set()

    def take(row: int) -> None:
        if row not in seen and len(chosen) < count:
            seen.add(row)
            chosen.append(row)

    for row in _coverage(ref, classification, labels, -(-count // 2)):
        take(row)

    faults: list[int] = []
    for fault in fault_outputs:
        diff = np.abs(np.asarray(fault).reshape(n, -1).astype(np.int64)
                      - ref.astype(np.int64)).max(axis=1)
        faults += [int(i) for i in np.lexsort((np.arange(n), -diff)) if diff[i] > 0]
    if classification and ref.shape[1] >= 2:
        boundary = [int(i) for i in np.lexsort((np.arange(n), _margins(ref)))]
    else:
        boundary = []
    extremes = _extremes(np.asarray(xq), input_zero_point)
    order = np.lexsort((np.arange(n), ref.astype(np.int64).sum(axis=1)))
    spread = [int(order[i]) for i in _refining(n)]
    lists = [faults, boundary, extremes, spread]
    pos = [0] * len(lists)
    while len(chosen) < count and any(p < len(lst) for p, lst in zip(pos, lists, strict=True)):
        for i, lst in enumerate(lists):
            while pos[i] < len(lst) and lst[pos[i]] in seen:
                pos[i] += 1
            if pos[i] < len(lst):
                take(lst[pos[i]])
                pos[i] += 1
    return np.array(chosen, dtype=np.int64)


def per_tensor_misread(model: bytes) -> bytes | None:
    """The model as a library that reads FULLY_CONNECTED weights per tensor (TFLM of 2022-23:
    `filter->params.scale`, the first channel's scale) computes it; None if no
    FULLY_CONNECTED layer is per-channel. Run it in TFLM to see what such a board answers."""
    import flatbuffers

    from tinyship.convert.tflite_info import _op_names, _schema

    schema = _schema()
    names = _op_names(schema)
    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    g = m.subgraphs[0]
    changed = False
    for op in g.operators or []:
        code = m.operatorCodes[op.opcodeIndex]
        if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) != "FULLY_CONNECTED":
            continue
        q = g.tensors[op.inputs[1]].quantization
        if q is None or q.scale is None or len(q.scale) <= 1:
            continue
        q.scale = np.asarray(q.scale[:1], dtype=np.float32)
        q.zeroPoint = np.asarray(q.zeroPoint[:1], dtype=np.int64)
        q.quantizedDimension = 0
        changed = True
    if not changed:
        return None
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


#: Where a version's generated firmware source keeps its golden vectors (registry artifact).
EMBEDDED_GOLDEN_CC = "firmware/tinyship_model_data.cc"
_EMBEDDED_RE = r"{name}\s*\[[^\]]*\]\s*=\s*\{{([^}}]*)\}}"


def parse_embedded_golden(cc_text: str, n_in: int, n_out: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The int8 golden inputs (count, n_in) and outputs (count, n_out) of a generated
    `tinyship_model_data.cc` (`tinyship_golden_inputs` / `_outputs`): what the firmware's
    self-test runs, read back by the virtual board and the slot installer. ValueError when
    their sizes do not fit the model's."""

    def values(name: str) -> list[int]:
        m = re.search(_EMBEDDED_RE.format(name=re.escape(name)), cc_text)
        if m is None:
            return []
        return [int(v) for v in m.group(1).replace("\n", " ").split(",") if v.strip()]

    gi, go = values("tinyship_golden_inputs"), values("tinyship_golden_outputs")
    count = len(gi) // n_in if n_in > 0 else 0
    if n_out < 1 or len(gi) != count * n_in or len(go) != count * n_out:
        raise ValueError("golden vectors do not match the model's input/output size")
    return (np.array(gi, dtype=np.int8).reshape(count, n_in),
            np.array(go, dtype=np.int8).reshape(count, n_out))
