"""gen.report: the Yosys synth_xilinx flow and the checks on its result.

The board presets' own synthesis takes 1.5 min (Nexys Video) and 7.5 min (KV260) in
Yosys's WebAssembly build, so ``make bench`` runs them and applies ``report.problems``
(each fits its device with ``report.MARGIN``, 20%, of every resource to spare; one DSP
per PE; the activation buffer in block RAM; the KV260's LUT depth within 6) next to its
resource table. ``make test`` runs the same flow on the ``tiny`` preset (35 s).
"""

from gen import report
from hdl.spec.boards import BOARDS
from hdl.spec.config import preset


def test_the_synthesis_flow_counts_a_small_build():
    config, device = preset("tiny"), BOARDS["nexys_video"].fpga
    result = report.estimate_config(config, device)
    assert result.fits(device), report.table([result])
    assert not result.fits(device, margin=1 - result.luts / device.luts + 1e-3)   # fits() measures
    assert result.dsps == config.rows * config.cols                              # a DSP per PE
    assert 0 < result.luts < device.luts and 0 < result.ffs and 0 < result.lut_depth <= 6
    assert result.lut_path_from


def test_problems_names_each_failed_check():
    """On a made-up result for the KV260: too big, too few DSPs, too little RAM, too deep."""
    result = report.Resources(preset="kv260", verilog_sha1="", luts_logic=10 ** 6, luts_memory=0, ffs=1, dsps=3,
                              bram36=0.5, urams=0, lut_depth=7, lut_path_from="pe", seconds=0.0)
    found = report.problems("kv260", result)
    assert [line.split()[0] for line in found] == ["does", "3", "0.5", "implausible:", "LUT"], found
    assert "LUT depth 7 > 6 (from pe)" in found
