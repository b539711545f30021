"""The AXI4 master properties of ``DmaReader`` (k-induction) and ``DmaWriter`` (bounded
model check from reset) hold, and the harness bites: each injected fault trips the
property it was written against, in a counterexample from reset."""

import re
from pathlib import Path

import pytest

from sim.formal import dma_formal
from sim.formal.dma_formal import BUGS, MODES, run

# The source text of the assertion each fault must violate.
VIOLATED = {
    "drop_arvalid": "check(valid)",
    "coherent_weights": "Mux(issued_coherent, is_coherent, is_plain)",
    "arlen_past_boundary": "offset <= BOUNDARY_BYTES",
    "extra_outstanding_read": "<= config.max_outstanding",
    "idle_before_r": "accepted.count == 0",
    "unstable_wdata": "check(p == h)",
    "awlen_past_boundary": "offset <= BOUNDARY_BYTES",
    "extra_outstanding_write": "<= config.max_outstanding",
    "missing_wlast": "bus.wlast == (beat == w_owed.head)",
    "idle_before_b": "aw_unanswered == 0",
}


def _failed_assertion(log: str) -> str:
    match = re.search(r"Assert failed in dma_formal: .*dma_formal\.py:(\d+)", log)
    assert match, log
    lines = Path(dma_formal.__file__).read_text().splitlines()
    return lines[int(match.group(1)) - 1]


@pytest.mark.parametrize("block", ["reader", "writer"])
def test_dma_axi4_master_properties_hold(block):
    status, log = run(block)
    assert status == "PASS", log
    if MODES[block][0] == "prove":
        assert "successful proof by k-induction" in log
    else:
        assert "engine_0 (smtbmc --syn z3) returned pass" in log


@pytest.mark.parametrize("block,bug", [(block, bug) for block, bugs in BUGS.items()
                                       for bug in bugs])
def test_a_broken_master_fails_the_check(block, bug):
    status, log = run(block, bug)
    assert status == "FAIL", log
    assert "BMC failed!" in log          # a real counterexample from reset
    assert VIOLATED[bug] in _failed_assertion(log), log
