"""The AXI4-Lite slave properties of ``Csr`` hold (k-induction), and the harness bites."""

import re

import pytest

from sim.formal.csr_formal import run


def test_csr_axi_lite_properties_are_proved():
    status, log = run()
    assert status == "PASS", log
    assert "successful proof by k-induction" in log


@pytest.mark.parametrize("bug", ["drop_read_response", "extra_write_response"])
def test_a_broken_slave_fails_the_proof(bug):
    status, log = run(bug)
    assert status == "FAIL", log
    # A real counterexample from reset, not an induction artefact.
    assert "counterexample trace [basecase]" in log
    assert re.search(r"failed assertion .* step \d+", log)
