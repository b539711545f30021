"""AccelConfig's derived values, the presets against the board registry, and the register
map's generated views: the C header compiled and run, the Python module executed, the
Markdown tables parsed. Each view is compared with ``hdl.spec.regmap`` itself."""

import re
import shutil
import subprocess

import pytest

from gen.regs import c_header, markdown, python_module
from hdl.spec.boards import BOARDS
from hdl.spec.config import PRESETS, preset
from hdl.spec.dma import blocks
from hdl.spec.job import Job, check, row_strides
from hdl.spec.regmap import REGISTERS, VERSION, ErrorCode, by_name, const_value

CONFIGS = pytest.mark.parametrize("config", PRESETS.values(), ids=list(PRESETS))
CONST_REGISTERS = [reg for reg in REGISTERS if reg.kind == "const"]
PATTERN = 0xA5C3961E           # a word with every field holding some ones and some zeros


@pytest.mark.parametrize("change,message", [
    ({"cols": 8}, "cols=8"),
    ({"rows": 0}, "rows=0"),
    ({"act_buffer_bytes": 1000}, "act_buffer_bytes=1000"),
    ({"addr_width": 20}, "addr_width=20"),
    ({"max_burst": 3}, "max_burst=3"),
])
def test_bad_configs_name_the_value(change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        preset("kv260").replace(**change)


def test_unknown_preset_lists_the_names():
    with pytest.raises(KeyError, match="kv260"):
        preset("nope")


@CONFIGS
def test_derived_values(config):
    # One M block (rows x max_k int8) fills the activation buffer exactly.
    assert config.max_k * config.rows == config.act_buffer_bytes
    # One CAP_MAX_MN serves M and N, so both count fields must hold the same range.
    assert config.max_mn == by_name("M").field("count").limit == by_name("N").field("count").limit
    # c_beats_per_row is the length of the DMA plan's write of one row of a full N tile.
    a_stride, c_stride = row_strides(config, 1, config.cols)
    job = Job(a_addr=0, w_addr=0x10000, c_addr=0x20000, m=1, n=config.cols, k=1,
              a_stride=a_stride, c_stride=c_stride)
    assert check(config, job) == (ErrorCode.OK, 0)
    assert [write.beats for write in blocks(config, job)[0].c_writes] == [config.c_beats_per_row]


@pytest.mark.parametrize("board", BOARDS.values(), ids=list(BOARDS))
def test_board_presets_reach_every_dram_window(board):
    config = preset(board.preset)
    for window in board.dram_windows:
        assert window.end <= 1 << config.addr_width, (
            f"{board.name}: {config.addr_width}-bit DMA addresses of preset {config.name!r} do not "
            f"reach {window.name} (0x{window.base:X}..0x{window.end:X})")


def test_hls_control_layout():
    assert [by_name(n).offset for n in ("CTRL", "GIE", "IER", "ISR", "A_ADDR_LO")] == [0, 4, 8, 12, 0x10]
    ctrl = {f.name: f.lsb for f in by_name("CTRL").fields}
    assert (ctrl["ap_start"], ctrl["ap_done"], ctrl["ap_idle"], ctrl["ap_ready"]) == (0, 1, 2, 3)


# Prints every value systole_regs.h defines; the X-macro lists name them, so the program
# lists nothing by hand and a name missing from the header is missing from the output.
HEADER_DUMP_C = r"""
#include <stdio.h>
#include "systole_regs.h"
#define REG(name) printf("reg %s %u\n", #name, (unsigned)SYSTOLE_##name);
#define FIELD(reg, fld) printf("field %s %s %u %u %u %u\n", #reg, #fld, \
    (unsigned)SYSTOLE_##reg##_##fld##_SHIFT, (unsigned)SYSTOLE_##reg##_##fld##_MASK, \
    (unsigned)SYSTOLE_##reg##_##fld(0xFFFFFFFFu), (unsigned)SYSTOLE_##reg##_##fld(PATTERN));
#define ERR(name) printf("err %s %u\n", #name, (unsigned)SYSTOLE_ERR_##name);
#define EXPECT(name) printf("expect %s %u\n", #name, (unsigned)SYSTOLE_EXPECT_##name);
int main(void)
{
    printf("version %u\n", (unsigned)SYSTOLE_REGMAP_VERSION);
    printf("span %u\n", (unsigned)SYSTOLE_REG_SPAN);
    SYSTOLE_FOR_EACH_REGISTER(REG)
    SYSTOLE_FOR_EACH_FIELD(FIELD)
    SYSTOLE_FOR_EACH_ERR(ERR)
    SYSTOLE_FOR_EACH_EXPECT(EXPECT)
    return 0;
}
"""


def _run_header_dump(config, tmp_path) -> list[list[str]]:
    if shutil.which("gcc") is None:
        pytest.fail("`gcc` is not installed; run `make deps` (installs the Debian packages)")
    (tmp_path / "systole_regs.h").write_text(c_header(config))
    (tmp_path / "dump.c").write_text(HEADER_DUMP_C)
    build = subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Wconversion", "-Werror",
                            f"-DPATTERN=0x{PATTERN:08X}u", f"-I{tmp_path}", str(tmp_path / "dump.c"),
                            "-o", str(tmp_path / "dump")], capture_output=True, text=True)
    assert build.returncode == 0, f"systole_regs.h does not compile:\n{build.stderr}"
    run = subprocess.run([str(tmp_path / "dump")], capture_output=True, text=True, check=True)
    return [line.split() for line in run.stdout.splitlines()]


@pytest.mark.parametrize("config", [preset(board.preset) for board in BOARDS.values()], ids=list(BOARDS))
def test_c_header_compiles_to_the_register_map(config, tmp_path):
    lines = _run_header_dump(config, tmp_path)
    values = {kind: [words[1:] for words in lines if words[0] == kind]
              for kind in ("version", "span", "reg", "field", "err", "expect")}
    assert values["version"] == [[str(VERSION[0] << 16 | VERSION[1])]]
    assert values["span"] == [[str(max(reg.offset for reg in REGISTERS) + 4)]]
    assert {name: int(offset) for name, offset in values["reg"]} == {reg.name: reg.offset for reg in REGISTERS}
    assert [(reg, fld, *map(int, numbers)) for reg, fld, *numbers in values["field"]] == [
        (reg.name, fld.name.upper(), fld.lsb, fld.mask, fld.limit, (PATTERN & fld.mask) >> fld.lsb)
        for reg in REGISTERS for fld in reg.fields]
    assert {name: int(code) for name, code in values["err"]} == {code.name: code.value for code in ErrorCode}
    assert {name: int(value) for name, value in values["expect"]} == {
        reg.name: const_value(reg, config) for reg in CONST_REGISTERS}


@CONFIGS
def test_python_module_holds_the_register_map(config):
    namespace: dict = {}
    exec(python_module(config), namespace)
    assert namespace["REGMAP_VERSION"] == VERSION[0] << 16 | VERSION[1]
    for reg in REGISTERS:
        assert namespace[reg.name] == reg.offset
        for fld in reg.fields:
            stem = f"{reg.name}_{fld.name.upper()}"
            assert (namespace[f"{stem}_SHIFT"], namespace[f"{stem}_MASK"]) == (fld.lsb, fld.mask)
    assert namespace["ERROR_CODES"] == {code.value: code.name for code in ErrorCode}
    assert namespace["EXPECTED_CONSTANTS"] == {reg.name: const_value(reg, config) for reg in CONST_REGISTERS}


def _markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """``{heading: body rows}`` of every table; cells split at unescaped ``|``, unescaped."""
    tables: dict[str, list[list[str]]] = {}
    heading = ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            tables.setdefault(heading, []).append([cell.strip().replace("\\|", "|") for cell in cells])
    return {heading: rows[2:] for heading, rows in tables.items()}   # drop header and rule


def _bits(text: str) -> tuple[int, int]:
    """``"23:0"`` -> (lsb 0, width 24); ``"8"`` -> (8, 1)."""
    msb, _, lsb = text.partition(":")
    return (int(lsb or msb), int(msb) - int(lsb or msb) + 1)


@CONFIGS
def test_markdown_tables_hold_the_register_map(config):
    tables = _markdown_tables(markdown(config))
    title = next(iter(tables))
    assert re.search(rf"\bv{VERSION[0]}\.{VERSION[1]}\b.*`{re.escape(config.name)}`", title)
    rows = tables[title]
    assert [(int(offset, 16), name.strip("`"), access) for offset, name, access, _ in rows] == [
        (reg.offset, reg.name, reg.access) for reg in REGISTERS]
    for reg, (*_, doc) in zip(REGISTERS, rows):
        assert doc.startswith(reg.doc)
        reads = re.search(r"Reads 0x([0-9A-F]{8}) here\.$", doc)
        assert int(reads.group(1), 16) == const_value(reg, config) if reg.kind == "const" else reads is None
    field_tables = {heading.split("`")[1]: body for heading, body in tables.items() if heading.endswith(" fields")}
    assert field_tables.keys() == {reg.name for reg in REGISTERS if reg.fields}
    for name, body in field_tables.items():
        assert [(*_bits(bits), fld.strip("`"), doc) for bits, fld, doc in body] == [
            (f.lsb, f.width, f.name, f.doc) for f in by_name(name).fields]
    errors = next(body for heading, body in tables.items() if heading.startswith("Error codes"))
    assert [(int(value, 16), name.strip("`"), doc) for value, name, doc in errors] == [
        (code.value, code.name, code.doc) for code in ErrorCode]
