"""gen.report: both board presets synthesize (Yosys synth_xilinx) and fit their devices
with ``report.MARGIN`` (20%) of every resource to spare."""

import pytest

from gen import report
from hdl.spec.boards import BOARDS
from hdl.spec.config import preset


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_preset_fits_its_device(name):
    config, device = preset(BOARDS[name].preset), BOARDS[name].fpga
    result = report.estimate(name)
    assert result.fits(device), report.table([result])
    assert not result.fits(device, margin=1 - result.luts / device.luts + 1e-3)   # fits() measures
    # One multiplier per PE: the array maps to DSP slices, not LUTs.
    assert result.dsps == config.rows * config.cols
    # The activation buffer needs at least its own size in block RAM.
    assert result.bram36 * 36 * 1024 / 8 >= config.act_buffer_bytes
    assert 0 < result.luts < device.luts and 0 < result.lut_depth < 20
    if name == "kv260":
        # 250 MHz on the -2LV K26: at most 6 LUTs between two flip-flops (hdl/README.md, Timing).
        assert result.lut_depth <= 6, report.table([result])
