"""gen.report: a board preset synthesizes (Yosys synth_xilinx) and fits its device with
``report.MARGIN`` (20%) of every resource to spare (``report.problems``).

``make test`` synthesizes the Nexys Video's preset (about 1.5 min here); the KV260's
takes about 7.5 min in Yosys's WebAssembly build, so ``make bench`` checks it, with
the same ``report.problems`` (its LUT depth included), next to its resource table.
"""

from gen import report
from hdl.spec.boards import BOARDS


def test_the_nexys_video_preset_fits_its_device():
    device = BOARDS["nexys_video"].fpga
    result = report.estimate("nexys_video")
    assert report.problems("nexys_video", result) == [], report.table([result])
    assert not result.fits(device, margin=1 - result.luts / device.luts + 1e-3)   # fits() measures


def test_problems_names_each_failed_check():
    """On a made-up result for the KV260: too big, too few DSPs, too little RAM, too deep."""
    result = report.Resources(preset="kv260", verilog_sha1="", luts_logic=10 ** 6, luts_memory=0, ffs=1, dsps=3,
                              bram36=0.5, urams=0, lut_depth=7, lut_path_from="pe", seconds=0.0)
    found = report.problems("kv260", result)
    assert [line.split()[0] for line in found] == ["does", "3", "0.5", "implausible:", "LUT"], found
    assert "LUT depth 7 > 6 (from pe)" in found
