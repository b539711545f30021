"""generate() over UDP through the simulated Ethernet core, the link and the accelerator.

The chain is the board's: this process runs the real host stack (``host.llm`` ->
``host.accel.driver`` -> ``host.platforms.udp``'s ``UdpLink`` on a real UDP socket);
``sim.eth_socket``'s bridge in the simulator turns each datagram into an Ethernet frame
on LiteEth's GMII side (scapy), and the core's answers back into datagrams; behind the
core sit ``EthLink`` and the accelerator with its DDR model. A small llama2.c model
must generate exactly the golden backend's tokens.

Faults are injected on the way: in each direction datagrams are lost, corrupted under
a good Ethernet FCS (the link CRC catches them), spoiled in their FCS (the MAC drops
them) and duplicated. The link must recover by itself, and nothing may run twice:
the accelerator sees exactly as many job starts as the driver ran jobs, each job sent
as one window (protocol 2.2); the decode tokens' jobs are submitted by the fused
decoder's compiled code (``systole_udp_job``), the prompt's by the driver's Python.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import cocotb
import pytest

PROMPT = "Once upon a time"
NEW_TOKENS = 4
FAULT_PLAN = "17,1,200"          # seed, faults of each kind per direction, over the first 200 datagrams
PORT_FILE_ENV = "SYSTOLE_ETH_PORT_FILE"
STATS_ENV = "SYSTOLE_ETH_STATS"
FAULTS_ENV = "SYSTOLE_ETH_FAULTS"


@cocotb.test()
async def serve_a_host_over_udp(dut):
    """Bridge a loopback UDP socket into the core until the host sends STOP."""
    from sim.eth_socket import FaultPlan, SocketBridge
    from sim.eth_tb import TB
    tb = TB(dut)
    await tb.reset()
    bridge = SocketBridge(tb, FaultPlan.parse(os.environ.get(FAULTS_ENV, "")))
    Path(os.environ[PORT_FILE_ENV]).write_text(str(bridge.port))
    await bridge.run()
    stats = dict(bridge.stats, bad_frames_from_core=tb.net.bad_frames)
    Path(os.environ[STATS_ENV]).write_text(json.dumps(stats))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from host.llm.model import load_model
    from tests.host_testmodels import write_tiny_llama2c
    path, tokenizer = write_tiny_llama2c(tmp_path_factory.mktemp("llama2c"))
    return load_model(path, tokenizer_path=tokenizer, progress=False)


def _start_simulation(tmp_path: Path) -> tuple[threading.Thread, list, Path, Path]:
    from sim.eth_tb import CONFIG
    from sim.eth_system import eth_link_top, eth_sources
    from sim.runner import run_cocotb
    from sim.top_build import top_build_args
    port_file, stats_file = tmp_path / "port", tmp_path / "stats.json"
    errors: list = []

    def simulate():
        try:
            sources, toplevel = eth_sources(CONFIG, eth_link_top(CONFIG))
            run_cocotb(sources=sources, toplevel=toplevel, test_module=__name__, extra_args=top_build_args(),
                       extra_env={PORT_FILE_ENV: str(port_file), STATS_ENV: str(stats_file),
                                  FAULTS_ENV: FAULT_PLAN})
        except BaseException as error:       # reported by the test
            errors.append(error)

    thread = threading.Thread(target=simulate, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600             # a cold Verilator build included
    while not port_file.exists():
        if errors or not thread.is_alive():
            raise AssertionError(f"the simulation ended before it listened: {errors}")
        if time.monotonic() > deadline:
            raise AssertionError("the simulation did not listen within 600 s")
        time.sleep(0.2)
    time.sleep(0.05)                              # the number is written whole before use
    return thread, errors, port_file, stats_file


@pytest.mark.xdist_group("eth_system")
def test_generation_over_udp_with_faults_equals_golden(model, tmp_path):
    from host.accel.driver import Driver
    from host.accel.hardware import DriverBackend
    from host.llm.generate import Runtime
    from host.platforms.link import LinkMemory, LinkRegisterBus
    from hdl.spec.link_protocol import Command
    from host.platforms.udp import UdpLink
    from sim.eth_socket import STOP
    from sim.eth_tb import CONFIG

    thread, errors, port_file, stats_file = _start_simulation(tmp_path)
    port = int(port_file.read_text())
    # Simulated answers take wall-clock milliseconds; a lost one costs one timeout.
    link = UdpLink.open(f"127.0.0.1:{port}", "127.0.0.1", port, timeout_s=1.0, retries=8)
    try:
        from_python = []                           # jobs the driver's Python submitted (the prompt's)
        submit = link.submit
        link.submit = lambda *args: from_python.append(1) or submit(*args)
        bus, memory = LinkRegisterBus(link), LinkMemory(link, 0, 1 << 20)
        backend = DriverBackend(CONFIG, Driver(bus, memory, CONFIG), "link", platform=link)
        got = Runtime(model, backend, "per-channel").generate(PROMPT, max_new_tokens=NEW_TOKENS)
        jobs = backend.jobs
        windows = link.exchanges.get(Command.REPLAY_AFTER, 0)
    finally:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stopper:
            stopper.sendto(STOP, ("127.0.0.1", port))
        link.close()
        thread.join(timeout=120)
    assert not errors, errors
    want = Runtime(model, "golden", "per-channel", preset=CONFIG).generate(PROMPT, max_new_tokens=NEW_TOKENS)
    assert got.tokens == want.tokens and got.text == want.text

    stats = json.loads(stats_file.read_text())
    print(f"\nover UDP: {stats['to_board']} datagrams to the board, {stats['to_host']} answers, "
          f"{jobs} jobs; faults {({k: v for k, v in stats.items() if k.endswith(('_to_board', '_to_host'))})}")
    # Every kind of fault happened in both directions, and the link recovered.
    for kind in ("drop", "bad_fcs", "flip", "duplicate"):
        assert stats[f"{kind}_to_board"] == 1 and stats[f"{kind}_to_host"] == 1, stats
    assert stats["bad_frames_from_core"] == 0
    # Nothing ran twice: one ap_start on the accelerator's port per job the driver ran.
    assert stats["job_starts"] == jobs > 0
    # Each job one window (protocol 2.2: A, the REPLAY_AFTER and C's first reads together).
    assert windows == jobs
    # The decode tokens' jobs were submitted by the fused decoder's compiled code
    # (systole_udp_job through its address), the prompt's by the driver's Python.
    assert 0 < len(from_python) < jobs
