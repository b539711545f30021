"""``python -m gen.verilog`` writes the top and the register artefacts, and the top's
ports are exactly the Vivado-inferable set."""

import re

from gen.verilog import main

LITE = ("awaddr awprot awvalid awready wdata wstrb wvalid wready bresp bvalid bready "
        "araddr arprot arvalid arready rdata rresp rvalid rready").split()
AXI4 = [f"{ch}{sig}" for ch in ("aw", "ar")
        for sig in ("id addr len size burst lock cache prot qos valid ready").split()]
AXI4 += "wdata wstrb wlast wvalid wready bid bresp bvalid bready".split()
AXI4 += "rid rdata rresp rlast rvalid rready".split()


def test_verilog_artefacts_and_ports(tmp_path, capsys):
    assert main(["--preset", "tiny", "--out", str(tmp_path)]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"systole_top.v", "systole_regs.h", "systole_regs.py", "registers.md",
                     "systole_job_vectors.h"}
    text = (tmp_path / "systole_top.v").read_text()
    header = re.search(r"module systole_top\((.*?)\);", text, re.S)
    assert header, "no systole_top module"
    ports = {p.strip() for p in header.group(1).split(",")}
    # tiny streams its weights over two ports: m_axi_w1 is an AXI4 read master. Its masters
    # have their own clock and reset (axi_clock_mhz).
    read_only = [s for s in AXI4 if s.startswith(("ar", "r"))]
    expected = {"aclk", "aresetn", "m_axi_aclk", "m_axi_aresetn", "irq"} | {f"s_axi_ctrl_{s}" for s in LITE} \
        | {f"m_axi_dma_{s}" for s in AXI4} | {f"m_axi_w1_{s}" for s in read_only}
    assert ports == expected
    # Widths follow the preset (tiny: 32-bit data and addresses).
    assert re.search(r"output \[31:0\] m_axi_dma_araddr;", text)
    assert re.search(r"output \[31:0\] m_axi_w1_araddr;", text)
    assert re.search(r"input \[31:0\] m_axi_w1_rdata;", text)
    assert re.search(r"input \[7:0\] s_axi_ctrl_awaddr;", text)
    assert "wrote" in capsys.readouterr().out


def test_every_synchronizer_flop_is_marked_async_reg(tmp_path):
    """tiny clocks its masters apart from the core: FFSynchronizer stages carry ASYNC_REG
    (hdl.to_verilog), all of them registers or the ports they drive (the last stage takes
    the name of the signal it feeds); a one-clock build has none."""
    assert main(["--preset", "tiny", "--out", str(tmp_path / "two")]) == 0
    text = (tmp_path / "two" / "systole_top.v").read_text()
    marked = re.findall(r'\(\* ASYNC_REG = "TRUE" \*\)\s*(?:\(\* init = [^*]*\*\)\s*)?(?:reg|output|wire) '
                        r'(?:\[[^\]]*\] )?(\w+)', text)
    assert len(marked) == text.count("ASYNC_REG") >= 2 * 3 * 4   # >= 4 synchronizers per crossing
    assert {"stage0", "stage1", "block__abort", "clear_at_block", "offered", "answered"} <= set(marked)
    assert main(["--preset", "tiny", "--one-clock", "--out", str(tmp_path / "one")]) == 0
    assert "ASYNC_REG" not in (tmp_path / "one" / "systole_top.v").read_text()
