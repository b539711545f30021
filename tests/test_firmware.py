"""firmware/: the C driver and self-test build for the host and the KV260's A53, and the C
packing and reference product agree bit for bit with host.accel.pack / host.accel.golden."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gen.regs import c_header
from hdl.spec.config import preset
from hdl.spec.regmap import ErrorCode
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights

REPO = Path(__file__).resolve().parent.parent
CROSS = "aarch64-linux-gnu-"
EM_AARCH64 = 183

# One worker runs the whole module, so no build is relinked while another runs it.
pytestmark = pytest.mark.xdist_group("firmware")


def _require(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"`{tool}` is not installed; run `make deps` (installs the Debian packages)")


@pytest.fixture(scope="module")
def build_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("firmware")


def _build(build_root: Path, preset_name: str, cross: str = "", target: str = "all") -> Path:
    """Write the preset's generated header and build the firmware against it; the output dir."""
    _require(f"{cross}gcc")
    regs_dir = build_root / f"regs-{preset_name}"
    regs_dir.mkdir(parents=True, exist_ok=True)
    (regs_dir / "systole_regs.h").write_text(c_header(preset(preset_name)))
    out = build_root / f"{cross.rstrip('-') or 'host'}-{preset_name}"
    result = subprocess.run(
        ["make", "-s", "-C", str(REPO / "firmware"), f"REGS={regs_dir / 'systole_regs.h'}", f"OUT={out}",
         f"CROSS_COMPILE={cross}", target], capture_output=True, text=True)
    assert result.returncode == 0, f"firmware build failed:\n{result.stdout}\n{result.stderr}"
    return out


@pytest.fixture(scope="module")
def host_kv260(build_root) -> Path:
    return _build(build_root, "kv260")


def _selftest(out: Path, *args) -> str:
    result = subprocess.run([str(out / "selftest"), *map(str, args)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"selftest {args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("preset_name", ["kv260", "nexys_video"])
def test_cross_compiles_for_aarch64(build_root, preset_name):
    out = _build(build_root, preset_name, CROSS)
    elf = (out / "selftest").read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[4] == 2, "not a 64-bit ELF"
    assert int.from_bytes(elf[18:20], "little") == EM_AARCH64, "selftest is not an AArch64 binary"
    assert (out / "libsystole.a").stat().st_size > 0


def test_bare_metal_configuration_compiles(build_root):
    # Without __linux__ the mmap/sysfs helpers drop out and selftest.c exports only
    # systole_selftest(); both must still compile cleanly under -Werror.
    out = _build(build_root, "nexys_video", CROSS, target="baremetal")
    symbols = subprocess.run(["nm", str(out / "baremetal" / "selftest.o")], capture_output=True, text=True).stdout
    assert " T systole_selftest" in symbols and " T main" not in symbols
    symbols = subprocess.run(["nm", str(out / "baremetal" / "systole.o")], capture_output=True, text=True).stdout
    assert " T systole_run" in symbols and "systole_open_uio" not in symbols


def test_host_reference_self_check_passes(host_kv260):
    assert "300 of 300 random products correct" in _selftest(host_kv260, "reference", 7, 300)


@pytest.mark.parametrize("seed, m, n, k, cols", [
    (1, 1, 1, 1, 16), (2, 3, 17, 33, 16), (3, 5, 40, 130, 8),   # seed 3: only -128/127
    (4, 9, 64, 640, 16), (7, 2, 5, 4096, 4), (11, 16, 33, 77, 32),
])
def test_c_packing_and_reference_match_python(host_kv260, tmp_path, seed, m, n, k, cols):
    _selftest(host_kv260, "dump", tmp_path, seed, m, n, k, cols)
    a = np.fromfile(tmp_path / "a.bin", dtype=np.int8).reshape(m, k)
    w = np.fromfile(tmp_path / "w.bin", dtype=np.int8).reshape(n, k)
    packed_c = np.fromfile(tmp_path / "packed.bin", dtype=np.int8)
    c_c = np.fromfile(tmp_path / "c.bin", dtype=np.int32).reshape(m, n)
    packed = pack_weights(w, cols)
    np.testing.assert_array_equal(packed_c, packed.data)
    np.testing.assert_array_equal(c_c, golden_matmul(a, packed))
    if seed % 4 == 3:
        assert set(np.unique(a)) <= {-128, 127} and set(np.unique(w)) <= {-128, 127}


def test_error_names_cover_every_error_code(host_kv260):
    for code in ErrorCode:
        assert _selftest(host_kv260, "errname", int(code)).strip() == code.name
    assert _selftest(host_kv260, "errname", 0xEE).strip() == "UNKNOWN"


def test_init_checks_identity_version_and_capabilities(host_kv260):
    config = preset("kv260")
    lines = dict(line.split(" ", 1) for line in _selftest(host_kv260, "fakeinit").splitlines())
    status = {name: int(rest.split()[0]) for name, rest in lines.items()}
    # 0 = ok, -1 = bad ID, -2 = major version, -3 = capabilities (firmware/systole.h)
    assert status == {"good": 0, "id": -1, "version": -2, "minor": 0, "array": -3, "bus": -3, "max_k": -3}
    fields = dict(item.split("=") for item in lines["good"].split()[1:])
    assert int(fields["rows"]) == config.rows and int(fields["cols"]) == config.cols
    assert int(fields["bus_bytes"]) == config.bus_bytes and int(fields["addr_width"]) == config.addr_width
    assert int(fields["max_burst"]) == config.max_burst and int(fields["max_k"]) == config.max_k
    # init leaves the engine soft-reset: CTRL was written with only soft_reset set.
    from hdl.spec.regmap import by_name
    soft_reset = next(f for f in by_name("CTRL").fields if f.name == "soft_reset")
    assert int(fields["ctrl"], 16) == soft_reset.mask
