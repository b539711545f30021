"""gen.report: the Yosys synth_xilinx flow and the checks on its result.

The board presets' own synthesis takes 1.5 min (Nexys Video) and 7.5 min (KV260) in
Yosys's WebAssembly build, so ``make bench`` runs them and applies ``report.problems``
(each fits its device with ``report.MARGIN``, 20%, of every resource to spare; one DSP
per PE; the activation buffer in block RAM; the KV260's LUT depth within 6) next to its
resource table (``python -m gen.bench``; ``python -m gen.report`` prints the table alone).
``make test`` checks ``report.problems`` itself, on made-up results.
"""

from gen import report


def test_problems_names_each_failed_check():
    """On a made-up result for the KV260: too big, too few DSPs, too little RAM, too deep."""
    result = report.Resources(preset="kv260", verilog_sha1="", luts_logic=10 ** 6, luts_memory=0, ffs=1, dsps=3,
                              bram36=0.5, urams=0, lut_depth=7, lut_path_from="pe", seconds=0.0)
    found = report.problems("kv260", result)
    assert [line.split()[0] for line in found] == ["does", "3", "0.5", "implausible:", "LUT"], found
    assert "LUT depth 7 > 6 (from pe)" in found


def test_problems_passes_a_result_within_every_limit():
    from hdl.spec.boards import BOARDS
    from hdl.spec.config import preset
    for name in BOARDS:
        config, device = preset(BOARDS[name].preset), BOARDS[name].fpga
        bram = config.act_buffer_bytes * 8 / (36 * 1024)
        result = report.Resources(preset=config.name, verilog_sha1="", luts_logic=device.luts // 2, luts_memory=0,
                                  ffs=device.ffs // 2, dsps=config.rows * config.cols, bram36=bram, urams=0,
                                  lut_depth=report.MAX_LUT_DEPTH.get(name, 12), lut_path_from="pe", seconds=0.0)
        assert report.problems(name, result) == [], (name, report.problems(name, result))
        assert report.problems(name, report.Resources(**{**result.__dict__, "luts_logic": device.luts})) != []
