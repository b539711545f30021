"""AccelConfig validation and the register map's generated views."""

import re

import pytest

from gen.regs import c_header, markdown, python_module
from hdl.spec.config import PRESETS, AccelConfig, preset
from hdl.spec.regmap import REGISTERS, ErrorCode, by_name, const_value


def test_presets_are_consistent():
    for config in PRESETS.values():
        assert config.cols * 8 == config.bus_bits
        assert config.max_k * config.rows == config.act_buffer_bytes
    assert preset("kv260").addr_width == 40
    with pytest.raises(KeyError, match="kv260"):
        preset("nope")


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


def test_hls_control_layout():
    assert [by_name(n).offset for n in ("CTRL", "GIE", "IER", "ISR", "A_ADDR_LO")] == [0, 4, 8, 12, 0x10]
    ctrl = {f.name: f.lsb for f in by_name("CTRL").fields}
    assert (ctrl["ap_start"], ctrl["ap_done"], ctrl["ap_idle"], ctrl["ap_ready"]) == (0, 1, 2, 3)


def test_generated_views_agree_with_the_description():
    config = preset("nexys_video")
    header, module, table = c_header(config), python_module(config), markdown(config)
    namespace: dict = {}
    exec(module, namespace)
    for reg in REGISTERS:
        assert f"#define SYSTOLE_{reg.name} 0x{reg.offset:02X}u" in header
        assert namespace[reg.name] == reg.offset
        assert f"| 0x{reg.offset:02X} | `{reg.name}` |" in table
    for code in ErrorCode:
        assert namespace["ERROR_CODES"][code.value] == code.name
    assert namespace["EXPECTED_CONSTANTS"]["CAP_ARRAY"] == config.rows | config.cols << 16
    assert const_value(by_name("CAP_MAX_K"), config) == 32 * 1024 // 8
