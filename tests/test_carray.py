"""The generated C array and op resolver compile on their own and carry the right model.

The op-resolver check instantiates the generated template with a recording resolver
(a test double standing in for TFLM's MicroMutableOpResolver, which is not on the host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinyship.config import Config
from tinyship.convert import carray, tflite_info
from tinyship.errors import ModelError
from tinyship.registry import Registry

CXX = shutil.which("g++") or shutil.which("c++")


def _version_dir(trained_registry: tuple[Config, str]) -> Path:
    cfg, version = trained_registry
    return Registry(cfg.registry_path).path(version)


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_model_data_compiles_alone_with_warnings_as_errors(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    fw = _version_dir(trained_registry) / "firmware"
    for src in ("tinyship_model_data.cc",):
        subprocess.run(
            [CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-c", str(fw / src),
             "-o", str(tmp_path / "m.o")],
            check=True,
        )
    # C++ translation unit that only includes the ops header must compile too.
    (tmp_path / "ops_only.cc").write_text('#include "tinyship_model_ops.h"\n')
    subprocess.run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(fw), "-c",
                    str(tmp_path / "ops_only.cc"), "-o", str(tmp_path / "o.o")], check=True)


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_compiled_array_matches_model_and_registers_exactly_its_ops(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    vdir = _version_dir(trained_registry)
    model = (vdir / "model_int8.tflite").read_bytes()
    ops = tflite_info.inspect_model(model).ops
    methods = "\n".join(
        f'  int {m}() {{ log("{op}"); return 0; }}' for op, m in carray.RESOLVER_METHODS.items()
    )
    (tmp_path / "main.cc").write_text(f"""
#include <cstdint>
#include <cstdio>
#include "tinyship_model_data.h"
#include "tinyship_model_ops.h"
struct RecordingResolver {{
  void log(const char* op) {{ std::printf("op %s\\n", op); }}
{methods}
}};
int main() {{
  RecordingResolver r;
  int rc = tinyship_register_ops(r);
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned i = 0; i < tinyship_model_data_len; ++i) {{
    crc ^= tinyship_model_data[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }}
  std::printf("rc %d\\nlen %u\\ncrc %08x\\nexpected %08x\\naligned %d\\n", rc,
              tinyship_model_data_len, crc ^ 0xFFFFFFFFu, (unsigned)TINYSHIP_MODEL_CRC32,
              (int)(reinterpret_cast<std::uintptr_t>(tinyship_model_data) % 16 == 0));
  std::printf("golden %d %d\\n", TINYSHIP_GOLDEN_COUNT, (int)tinyship_golden_outputs[0]);
  return 0;
}}
""")
    exe = tmp_path / "check"
    subprocess.run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I",
                    str(vdir / "firmware"), str(tmp_path / "main.cc"),
                    str(vdir / "firmware" / "tinyship_model_data.cc"), "-o", str(exe)],
                   check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert [ln[3:] for ln in lines if ln.startswith("op ")] == ops
    fields = dict(ln.split(" ", 1) for ln in lines if not ln.startswith("op "))
    assert fields["rc"] == "0"
    assert int(fields["len"]) == len(model)
    assert int(fields["crc"], 16) == zlib.crc32(model) == int(fields["expected"], 16)
    assert fields["aligned"] == "1"
    test_set = np.load(vdir / "test_set.npz")
    golden_count, first_out = (int(v) for v in fields["golden"].split())
    assert golden_count >= 1
    assert first_out in set(test_set["reference_int8"].reshape(-1).tolist())


def test_arm_cross_compile_of_model_data(
    trained_registry: tuple[Config, str], tmp_path: Path
) -> None:
    arm = shutil.which("arm-none-eabi-g++")
    if arm is None:
        if os.environ.get("TINYSHIP_REQUIRE_ARM") == "1":
            pytest.fail("arm-none-eabi-g++ not found but TINYSHIP_REQUIRE_ARM=1")
        pytest.skip("arm-none-eabi-g++ not installed (Debian: gcc-arm-none-eabi)")
    fw = _version_dir(trained_registry) / "firmware"
    subprocess.run([arm, "-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-Os", "-Wall",
                    "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti", "-c",
                    str(fw / "tinyship_model_data.cc"), "-o", str(tmp_path / "m.o")],
                   check=True)


def test_manifest_records_quantization_and_hashes(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    reg = Registry(cfg.registry_path)
    m = reg.manifest(version)
    model = (reg.path(version) / "model_int8.tflite").read_bytes()
    info = tflite_info.inspect_model(model)
    assert m["model"]["crc32"] == zlib.crc32(model)
    assert m["model"]["input"]["scale"] == pytest.approx(info.inputs[0].scale)
    assert m["model"]["output"]["zero_point"] == info.outputs[0].zero_point
    header = (reg.path(version) / "firmware" / "tinyship_model_data.h").read_text()
    assert f'#define TINYSHIP_MODEL_VERSION "{version}"' in header
    assert f'#define TINYSHIP_MODEL_SHA256 "{m["model"]["sha256"]}"' in header
    assert f"#define TINYSHIP_MODEL_ARENA_BYTES {m['model']['arena_bytes']}" in header
    assert reg.verify(version) == []


def test_default_profile_model_has_per_tensor_dense(trained_registry: tuple[Config, str]) -> None:
    cfg, version = trained_registry
    model = (Registry(cfg.registry_path).path(version) / "model_int8.tflite").read_bytes()
    info = tflite_info.inspect_model(model)
    assert cfg.quantization.profile == "tflm-arduino-2023"
    assert info.per_channel_dense == 0
    assert tflite_info.check_profile(info, "tflm-arduino-2023") == []


def test_render_rejects_unknown_ops_and_unsafe_versions(
    trained_registry: tuple[Config, str],
) -> None:
    cfg, version = trained_registry
    model = (Registry(cfg.registry_path).path(version) / "model_int8.tflite").read_bytes()
    info = tflite_info.inspect_model(model)
    ex = carray.ExportInputs(version='v1"; evil', profile="tflm-current", arena_bytes=1024,
                             feature_mean=[0.0] * 4, feature_std=[1.0] * 4,
                             golden_inputs=np.zeros((1, 4), np.int8),
                             golden_outputs=np.zeros((1, 1), np.int8))
    with pytest.raises(ModelError, match="not safe to embed"):
        carray.render(model, info, ex)
    odd = tflite_info.ModelInfo(["FULLY_CONNECTED", "LSTM"], info.inputs, info.outputs, 0,
                                info.size_bytes, info.macs)
    with pytest.raises(ModelError, match="LSTM"):
        carray.render(model, odd, ex)


def _synthetic(target_mean: float = 0.0, target_scale: float = 1.0) -> dict[str, str]:
    """Render a fake 4-in/1-out model (no TensorFlow needed) with the given target units."""
    tin = tflite_info.TensorInfo("in", [1, 4], "int8", 0.5, -1)
    tout = tflite_info.TensorInfo("out", [1, 1], "int8", 0.015625, -3)
    info = tflite_info.ModelInfo(["FULLY_CONNECTED"], [tin], [tout], 0, 64, 0)
    ex = carray.ExportInputs(version="v0007", profile="tflm-current", arena_bytes=1024,
                             feature_mean=[0.0] * 4, feature_std=[1.0] * 4,
                             golden_inputs=np.zeros((1, 4), np.int8),
                             golden_outputs=np.zeros((1, 1), np.int8),
                             target_mean=target_mean, target_scale=target_scale)
    return carray.render(bytes(range(64)), info, ex)


def test_header_defines_target_units() -> None:
    header = _synthetic(target_mean=81.25, target_scale=7.5)[carray.DATA_H]
    assert "#define TINYSHIP_MODEL_TARGET_MEAN 81.25f\n" in header
    assert "#define TINYSHIP_MODEL_TARGET_SCALE 7.5f\n" in header
    # classification and callers that do not pass them: the identity
    plain = _synthetic()[carray.DATA_H]
    assert "#define TINYSHIP_MODEL_TARGET_MEAN 0.0f\n" in plain
    assert "#define TINYSHIP_MODEL_TARGET_SCALE 1.0f\n" in plain


@pytest.mark.skipif(CXX is None, reason="no host C++ compiler")
def test_target_unit_macros_compute_the_host_conversion(tmp_path: Path) -> None:
    """The documented formula on the macros gives what `to_target_units` gives."""
    from tinyship.convert.runtimes import to_target_units

    mean, tscale = -12.375, 0.3
    for name, text in _synthetic(target_mean=mean, target_scale=tscale).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.cc").write_text("""
#include <cstdio>
#include "tinyship_model_data.h"
int main() {
  for (int q = -128; q < 128; q += 51) {
    const float z = static_cast<float>(q - TINYSHIP_MODEL_OUTPUT_ZERO_POINT) *
                    TINYSHIP_MODEL_OUTPUT_SCALE;
    std::printf("%.6f\\n", static_cast<double>(TINYSHIP_MODEL_TARGET_MEAN +
                                                TINYSHIP_MODEL_TARGET_SCALE * z));
  }
  return 0;
}
""")
    exe = tmp_path / "check"
    assert CXX is not None
    subprocess.run([CXX, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                    str(tmp_path / "main.cc"), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    q = np.arange(-128, 128, 51)
    want = to_target_units(q, {"scale": 0.015625, "zero_point": -3, "target_mean": mean,
                               "target_scale": tscale})
    np.testing.assert_allclose([float(v) for v in out.split()], want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("target", [{"target_scale": 0.0}, {"target_scale": 1e-50},
                                    {"target_scale": float("nan")},
                                    {"target_mean": float("inf")}])
def test_render_rejects_target_units_the_core_would_refuse(target: dict[str, float]) -> None:
    with pytest.raises(ModelError, match=r"target_scale|non-finite"):
        _synthetic(**target)


def test_inspect_rejects_non_tflite_bytes() -> None:
    with pytest.raises(ModelError, match="TFL3"):
        tflite_info.inspect_model(b"this is not a model at all")
