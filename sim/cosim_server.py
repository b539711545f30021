"""cocotb side of the co-simulation: serve driver requests to the simulated system.

``python -m sim.cosim`` runs this module as the cocotb test of the co-simulation;
it connects to the session's Unix socket and answers the requests of the protocol
that ``host.platforms.sim`` declares (``REQUEST``, ``REPLY``, ``OPS``). Simulated time
only moves inside requests, so a run is deterministic whatever the host does in
between.
"""

from __future__ import annotations

import logging
import os
import socket

import cocotb
from cocotb.triggers import ClockCycles, First, RisingEdge, Timer
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from host.platforms.sim import MEMORY_CONTROLS, OPS, REPLY, REQUEST, STATUS_ERROR, STATUS_OK

OP = {name: code for code, name in enumerate(OPS)}


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


@cocotb.test()
async def serve(dut):
    """Answer requests until the host sends CLOSE or hangs up."""
    period_ps = int(os.environ["SYSTOLE_COSIM_PERIOD_PS"])
    # aclk is generated inside the model (sim/dpi/systole_clock.sv).
    ctrl = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axi_ctrl"), dut.aclk, dut.aresetn,
                         reset_active_level=False)
    for interface in (ctrl.write_if, ctrl.read_if):
        interface.log.setLevel(logging.WARNING)
    dut.aresetn.value = 0
    await ClockCycles(dut.aclk, 4)
    dut.aresetn.value = 1
    await ClockCycles(dut.aclk, 2)
    reset_cycles = int(cocotb.utils.get_sim_time("ps")) // period_ps

    def cycles() -> int:
        return int(cocotb.utils.get_sim_time("ps")) // period_ps - reset_cycles

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["SYSTOLE_COSIM_SOCKET"])
    try:
        while True:
            request = _recv_exact(sock, REQUEST.size)
            if request is None:
                return
            op, a, b = REQUEST.unpack(request)
            status, value = STATUS_OK, 0
            if op == OP["READ32"]:
                response = await ctrl.read(a, 4)
                value = int.from_bytes(response.data, "little")
                status = STATUS_ERROR if response.resp else STATUS_OK
            elif op == OP["WRITE32"]:
                response = await ctrl.write(a, b.to_bytes(4, "little"))
                status = STATUS_ERROR if response.resp else STATUS_OK
            elif op == OP["WAIT_IRQ"]:
                if not dut.irq.value and a:
                    await First(RisingEdge(dut.irq), Timer(a * period_ps, unit="ps"))
                    await Timer(1, unit="ps")          # let the edge settle before sampling
                value = int(dut.irq.value)
            elif op == OP["NOW"]:
                value = cycles()
            elif op == OP["SET_MEMORY"] and a < len(MEMORY_CONTROLS):
                getattr(dut, f"mem_{MEMORY_CONTROLS[a]}").value = b
                await RisingEdge(dut.aclk)
            elif op == OP["CLOSE"]:
                sock.sendall(REPLY.pack(STATUS_OK, 0))
                return
            else:
                status = STATUS_ERROR
            sock.sendall(REPLY.pack(status, value))
    finally:
        sock.close()
