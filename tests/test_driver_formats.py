"""The driver and the weight formats: CAP_FORMATS decides, before any byte is placed.

A register model that reads a configuration's constant registers (and does nothing
else) stands in for the accelerator; the driver must load int4 weights where
CAP_FORMATS lists int4, in the packed layout of ``host.accel.pack.pack_int4``, and
refuse them with one clear error where it does not, without touching device memory.
"""

import numpy as np
import pytest

from hdl.spec.config import preset
from hdl.spec.formats import WeightFormat
from hdl.spec.regmap import REGISTERS, by_name, const_value
from host.accel.bus import MemoryWindow
from host.accel.driver import Driver, UnsupportedFormat
from host.accel.pack import Int4Weights, pack_int4
from host.accel.software import GoldenBackend


class ConstRegisters:
    """The constant registers of ``config``; CTRL reads idle; writes are recorded."""

    has_irq = False

    def __init__(self, config, **overrides):
        self.values = {reg.offset: const_value(reg, config) for reg in REGISTERS if reg.kind == "const"}
        for name, value in overrides.items():
            self.values[by_name(name).offset] = value
        self.values[by_name("CTRL").offset] = by_name("CTRL").field("ap_idle").mask
        self.writes = []

    def read32(self, offset):
        return self.values.get(offset, 0)

    def write32(self, offset, value):
        self.writes.append((offset, value))

    def wait_irq(self, timeout_s):
        return False

    def now(self):
        return 0.0


def int4_weights(n=40, k=100, seed=0):
    rng = np.random.default_rng(seed)
    return Int4Weights(rng.integers(-8, 8, (n, k), dtype=np.int8),
                       rng.integers(0, 16, (n, -(-k // 32)), dtype=np.uint8))


def test_int4_weights_load_in_the_packed_layout_where_cap_formats_lists_them():
    config = preset("kv260")
    memory = MemoryWindow(bytearray(1 << 20), 0x4000_0000)
    driver = Driver(ConstRegisters(config), memory, config)
    w = int4_weights()
    buffer = driver.load_matrix(w)
    assert buffer.w_format is WeightFormat.INT4
    packed = pack_int4(w, config.cols, config.weight_ports)
    for port, stream in enumerate(packed.streams()):
        start = buffer.buffer.offset + port * buffer.w_stride
        np.testing.assert_array_equal(memory.read(start, stream.size).view(np.int8), stream.reshape(-1))


def test_int4_weights_are_refused_where_cap_formats_lacks_them():
    config = preset("small")                     # int8 only: CAP_FORMATS = 0x1
    assert config.format_mask == 1
    memory = MemoryWindow(bytearray(1 << 20), 0x4000_0000)
    bus = ConstRegisters(config)
    driver = Driver(bus, memory, config)
    before = len(bus.writes)
    with pytest.raises(UnsupportedFormat, match=r"does not run int4 weights: its CAP_FORMATS is 0x1 \(int8\)"):
        driver.load_matrix(int4_weights())
    assert len(bus.writes) == before
    assert not np.asarray(memory.read(0, 1 << 20)).any(), "nothing placed in device memory"
    # The golden backend of that configuration refuses the same way, naming the layer.
    with pytest.raises(ValueError, match="ffn: small does not run int4 weights"):
        GoldenBackend(config).load("ffn", int4_weights())


def test_a_bitstream_whose_cap_formats_differs_from_the_config_is_refused():
    from host.accel.driver import ConfigMismatch
    config = preset("kv260")
    with pytest.raises(ConfigMismatch, match="CAP_FORMATS reads 0x1, config 'kv260' expects 0x3"):
        Driver(ConstRegisters(config, CAP_FORMATS=1), MemoryWindow(bytearray(4096), 0), config)
