"""Nothing on the host side waits forever, and every failure is one line naming what it awaited.

Peers that misbehave on purpose (an endless byte stream, a flood of sync bytes, a stall
mid-frame, stale frames replayed forever, every answer sent twice, write answers lost,
STALE forever), ports that cannot
be opened, bad numbers on the Nexys Video command line, a simulator that stops
answering or exits, and an accelerator that never finishes or never idles. Frames are
built with ``hdl.spec.link_protocol``'s encoders.

``FakePort`` and ``StuckAccelerator`` run on fake clocks and raise ``Overrun`` once the
client has waited far longer than its deadlines allow, and the simulator tests run the
request in a thread with a join timeout: a regression fails instead of hanging the suite.
"""

from __future__ import annotations

import itertools
import math
import shutil
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest

import host.platforms.link as link_module
from hdl.spec.config import preset
from hdl.spec.regmap import REGISTERS, by_name, const_value
from hdl.spec.link_protocol import (RESPONSE_LAYOUT, RESPONSE_SYNC, Command, Status, decode_request,
                                    encode_hello, encode_response)
from host.accel.bus import MemoryWindow
from host.accel.driver import AcceleratorError, AcceleratorTimeout, Driver
from host.errors import SystoleError
from host.platforms import nexys_video
from host.platforms.link import LinkError, LinkTimeout, SerialLink
from host.platforms.sim import CosimError, CosimSession

TIMEOUT_S = 0.1
RETRIES = 2
ATTEMPTS = RETRIES + 1
READ_S = 0.5e-3             # fake cost of one read() call
BYTE_S = 10e-6              # fake cost of one byte (a 1 Mbaud line)
EMPTY_READ_S = 0.05         # an empty read lasts the port's read timeout, as pyserial's does
BUDGET_S = 5.0              # fake seconds of reading after which the client is hung
# One late read, or one whole frame already under way, may pass a deadline.
SLACK_S = EMPTY_READ_S + READ_S + (4096 + 8) * BYTE_S


class Overrun(AssertionError):
    """The client kept reading far past every deadline it had."""


class FakePort:
    """A pyserial-like port on a fake clock; ``peer(fields, payload)`` says what comes back.

    The peer returns an iterable of byte chunks (it may be endless) for each request;
    answers queue up behind what is still unread, as on a real line.
    """

    def __init__(self, peer):
        self.peer = peer
        self.time = 0.0
        self.requests: list[dict] = []
        self.sent_at: list[float] = []
        self._stream = iter(())
        self._unread = bytearray()

    def now(self) -> float:
        return self.time

    def write(self, data: bytes) -> int:
        fields, payload = decode_request(bytes(data))
        self.requests.append(fields)
        self.sent_at.append(self.time)
        self._stream = itertools.chain(self._stream, self.peer(fields, payload))
        return len(data)

    def read(self, size: int) -> bytes:
        if self.time > BUDGET_S:
            raise Overrun(f"still reading after {self.time:.2f} fake seconds; the deadlines were "
                          f"{TIMEOUT_S} s per attempt")
        while len(self._unread) < size:
            chunk = next(self._stream, None)
            if chunk is None:
                break
            self._unread += chunk
        out = bytes(self._unread[:size])
        del self._unread[:size]
        self.time += READ_S + len(out) * BYTE_S + (0 if out else EMPTY_READ_S)
        return out

    def reset_input_buffer(self) -> None:
        self._unread.clear()


def link_to(peer) -> tuple[SerialLink, FakePort]:
    port = FakePort(peer)
    return SerialLink(port, timeout_s=TIMEOUT_S, retries=RETRIES, name="/dev/ttyFAKE at 921600 baud"), port


def assert_each_attempt_kept_its_deadline(port: FakePort, attempts: int = ATTEMPTS) -> None:
    assert len(port.requests) == attempts
    ends = port.sent_at[1:] + [port.time]
    for sent, end in zip(port.sent_at, ends):
        assert end - sent <= TIMEOUT_S + SLACK_S, f"an attempt sent at {sent:.3f} s ended at {end:.3f} s"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


# -- peers that never answer properly -----------------------------------------------
def no_sync_ever(fields, payload):
    noise = bytes(b for b in range(256) if b != RESPONSE_SYNC)
    return itertools.repeat(noise)


def sync_bytes_only(fields, payload):
    return itertools.repeat(bytes([RESPONSE_SYNC]) * 64)


def headers_claiming_64k(fields, payload):
    header = RESPONSE_LAYOUT.pack(cmd=fields["cmd"], seq=fields["seq"], status=0, length=0xFFFF)
    return itertools.repeat(bytes([RESPONSE_SYNC]) + header)


def test_an_endless_stream_without_a_sync_byte_times_out():
    link, port = link_to(no_sync_ever)
    with pytest.raises(LinkTimeout) as caught:
        link.read_reg(0x10)
    message = one_line(str(caught.value))
    assert message.startswith("/dev/ttyFAKE at 921600 baud: REG_READ 0x10 (attempt 3 of 3): ")
    assert f"no answer within {TIMEOUT_S} s (" in message and " stray bytes skipped)" in message
    assert link.stray_bytes > 100 and link.stale_frames == 0
    assert_each_attempt_kept_its_deadline(port)


@pytest.mark.parametrize("peer", [sync_bytes_only, headers_claiming_64k])
def test_a_flood_of_sync_bytes_and_impossible_headers_times_out(peer):
    # A header longer than any max_payload is noise: hunt on from the next byte rather
    # than read 64 KiB past the deadline and blame the CRC.
    link, port = link_to(peer)
    with pytest.raises(LinkTimeout, match=r"REG_READ 0x10 .*no answer within 0.1 s \(\d+ stray bytes "
                                          r"skipped\); bytes arrive but do not frame an answer"):
        link.read_reg(0x10)
    assert link.stray_bytes > 100 and link.crc_errors == 0
    assert_each_attempt_kept_its_deadline(port)


def hello_answer(fields, last_seq=0):
    return encode_response(Command.HELLO, fields["seq"], Status.OK,
                           encode_hello(max_payload=64, bus_bytes=16, addr_width=32, ctrl_addr_width=8,
                                        last_seq=last_seq))


@pytest.mark.parametrize("cut, progress", [(3, "3 bytes, the header incomplete"), (8, "8 of 9 bytes")])
def test_a_stall_mid_frame_times_out_at_the_deadline(cut, progress):
    def stalls(fields, payload):
        if fields["cmd"] == Command.HELLO:
            return [hello_answer(fields)]
        return [encode_response(fields["cmd"], fields["seq"], Status.OK)[:cut]]
    link, port = link_to(stalls)
    with pytest.raises(LinkTimeout) as caught:
        link.write_reg(0x08, 1)         # HELLO first; a write is retried under its seq
    assert one_line(str(caught.value)) == (
        "/dev/ttyFAKE at 921600 baud: REG_WRITE 0x8 (attempt 3 of 3): the device stopped answering "
        f"mid-response ({progress} within {TIMEOUT_S} s)")
    assert [(r["cmd"], r["seq"]) for r in port.requests] == [(Command.HELLO, 1)] + [(Command.REG_WRITE, 1)] * 3
    assert_each_attempt_kept_its_deadline(port, attempts=1 + ATTEMPTS)


@pytest.mark.parametrize("stale_key", [
    pytest.param(lambda f, age: (f["cmd"], f["seq"] - age), id="older-seq"),
    pytest.param(lambda f, age: (Command.IRQ if f["cmd"] != Command.IRQ else Command.HELLO, f["seq"]),
                 id="other-command"),
])
def test_stale_frames_replayed_forever_time_out_and_are_counted(stale_key):
    def replays(fields, payload):
        for age in itertools.cycle(range(1, 6)):
            cmd, seq = stale_key(fields, age)
            yield encode_response(cmd, seq, Status.OK, b"\xEE" * 4)
    link, port = link_to(replays)
    with pytest.raises(LinkTimeout) as caught:
        link.read_reg(0x10)
    message = one_line(str(caught.value))
    assert f"REG_READ 0x10 (attempt 3 of 3): no answer within {TIMEOUT_S} s (" in message
    assert "stale frames dropped); the device answers only earlier requests" in message
    assert link.stale_frames > 10 and link.stray_bytes == 0
    assert_each_attempt_kept_its_deadline(port)


def test_duplicated_answers_are_dropped_and_counted_and_nothing_runs_twice():
    registers: dict[int, int] = {}
    executed: list[tuple[int, int]] = []

    def bridge_that_answers_twice(fields, payload):
        cmd, addr = fields["cmd"], fields["addr"]
        executed.append((cmd, fields["seq"]))
        if cmd == Command.HELLO:
            out = encode_hello(max_payload=64, bus_bytes=16, addr_width=32, ctrl_addr_width=8)
        elif cmd == Command.REG_WRITE:
            registers[addr] = int.from_bytes(payload, "little")
            out = b""
        else:
            out = registers.get(addr, 0).to_bytes(4, "little")
        frame = encode_response(cmd, fields["seq"], Status.OK, out)
        return [frame, frame]

    link, port = link_to(bridge_that_answers_twice)
    link.hello()
    for offset, value in ((0x20, 5), (0x24, 7), (0x20, 9)):
        link.write_reg(offset, value)
        assert link.read_reg(offset) == value
    requests = 1 + 2 * 3
    assert link.frames == requests and len(executed) == requests   # nothing resent
    assert len(set(executed)) == requests                          # each request ran once
    assert link.stale_frames == requests - 1                       # the last copy is still unread
    assert registers == {0x20: 9, 0x24: 7}


def test_a_write_whose_answers_are_lost_is_resent_under_one_seq_and_runs_once():
    registers: dict[int, int] = {}
    executed: list[int] = []
    last = {"seq": 0, "status": Status.OK}

    def bridge_losing_two_write_answers(fields, payload):
        if fields["cmd"] == Command.HELLO:
            return [hello_answer(fields, last["seq"])]
        if fields["seq"] != last["seq"]:            # new: run it (this peer sees no older seqs)
            registers[fields["addr"]] = int.from_bytes(payload, "little")
            executed.append(fields["seq"])
            last["seq"] = fields["seq"]
        answer = encode_response(fields["cmd"], fields["seq"], last["status"])
        return [answer] if len(port.requests) > 3 else []

    link, port = link_to(bridge_losing_two_write_answers)
    link.write_reg(0x00, 1)                         # ap_start: written once, answered on attempt 3
    assert [(r["cmd"], r["seq"]) for r in port.requests] == [(Command.HELLO, 1)] + [(Command.REG_WRITE, 1)] * 3
    assert executed == [1] and registers == {0x00: 1}
    assert_each_attempt_kept_its_deadline(port, attempts=1 + ATTEMPTS)


def test_a_bridge_that_keeps_answering_stale_is_one_line_after_the_retries():
    board_seq = itertools.count(100, 10)           # another host keeps writing meanwhile

    def always_overtaken(fields, payload):
        if fields["cmd"] == Command.HELLO:
            return [hello_answer(fields, next(board_seq))]
        return [encode_response(fields["cmd"], fields["seq"], Status.STALE)]

    link, port = link_to(always_overtaken)
    with pytest.raises(link_module.LinkDeviceError) as caught:
        link.write_reg(0x08, 1)
    assert one_line(str(caught.value)).startswith("/dev/ttyFAKE at 921600 baud: REG_WRITE at 0x8 failed: "
                                                  "STALE (")
    # Each STALE asks HELLO and renumbers after the bridge's last_seq; retries bound it.
    assert [(r["cmd"], r["seq"]) for r in port.requests] == [
        (Command.HELLO, 1), (Command.REG_WRITE, 101), (Command.HELLO, 2), (Command.REG_WRITE, 111),
        (Command.HELLO, 3), (Command.REG_WRITE, 121)]


# -- ports that cannot be opened ------------------------------------------------------
def closed_socket_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"socket://127.0.0.1:{port}"


def test_a_missing_port_is_one_line_naming_it(tmp_path):
    port = str(tmp_path / "ttyUSB9")
    with pytest.raises(link_module.LinkOpenError) as caught:
        SerialLink.open(port, 921600)
    assert isinstance(caught.value, SystoleError) and caught.value.port == port
    assert one_line(str(caught.value)) == (f"cannot open {port}: No such file or directory; is the "
                                           "device connected and powered?")


def test_a_refused_socket_is_one_line_naming_it():
    url = closed_socket_url()
    with pytest.raises(link_module.LinkOpenError) as caught:
        SerialLink.open(url, 921600)
    assert one_line(str(caught.value)) == (f"cannot open {url}: Connection refused; nothing listens "
                                           "at that address")


@pytest.mark.parametrize("baud", [0, -9600, 9600.5, 921600.0, math.nan, "921600", True])
def test_open_refuses_a_baud_rate_that_is_not_a_positive_integer(baud):
    with pytest.raises(link_module.LinkOpenError) as caught:
        SerialLink.open("loop://", baud)
    assert one_line(str(caught.value)) == f"cannot open loop://: baud rate {baud!r} is not a positive integer"


# -- the Nexys Video command line -------------------------------------------------------
def exit_status(argv: list[str]) -> int:
    """What ``python -m host.platforms.nexys_video ARGV`` exits with (argparse exits itself)."""
    try:
        return nexys_video.main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize("argv, complaint", [
    (["--baud", "0"], "argument --baud: 0 must be >= 1"),
    (["--baud", "-9600"], "argument --baud: -9600 must be >= 1"),
    (["--baud", "9600.5"], "argument --baud: '9600.5' is not an integer"),
    (["--baud", "nan"], "argument --baud: 'nan' is not an integer"),
    (["--timeout", "0"], "argument --timeout: '0' must be > 0"),
    (["--timeout", "nan"], "argument --timeout: 'nan' must be a finite number"),
    (["--port", ""], "argument --port: the port must not be empty"),
])
def test_the_cli_refuses_bad_numbers_in_one_line(argv, complaint, capsys):
    assert exit_status(["--port", "loop://", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert one_line(captured.err) == f"python -m host.platforms.nexys_video: error: {complaint} (see --help)"


@pytest.mark.parametrize("port, reason", [
    (None, "No such file or directory; is the device connected and powered?"),
    (closed_socket_url, "Connection refused; nothing listens at that address"),
])
def test_the_cli_names_a_port_it_cannot_open_in_one_line(port, reason, tmp_path, capsys):
    port = str(tmp_path / "ttyUSB9") if port is None else port()
    assert exit_status(["--port", port]) == 2
    assert one_line(capsys.readouterr().err) == f"error: cannot open {port}: {reason}"


@pytest.mark.parametrize("value", ["fast", "0", "-1"])
def test_a_bad_baud_in_the_environment_is_one_line(value, monkeypatch, capsys):
    monkeypatch.setenv("SYSTOLE_LINK_BAUD", value)
    assert exit_status(["--port", "loop://"]) == 2
    assert one_line(capsys.readouterr().err) == (f"error: cannot open loop://: $SYSTOLE_LINK_BAUD={value!r} "
                                                 "is not a positive integer")


def test_a_port_that_echoes_is_one_line_after_the_timeout(capsys):
    # loop:// echoes the requests: bytes arrive, none frames an answer.
    assert exit_status(["--port", "loop://", "--timeout", "0.05"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: loop:// at 921600 baud: HELLO (attempt 3 of 3): no answer within 0.05 s (")


# -- the simulator ------------------------------------------------------------------
class SocketSim(CosimSession):
    """A session whose simulator is ``python -c CODE`` and whose socket peer is the test."""

    code = "import time; time.sleep(30)"

    def _start(self, memory_base: int) -> None:
        self._sock, self.peer = socket.socketpair()
        self.simulator = subprocess.Popen([sys.executable, "-c", self.code], stdin=subprocess.DEVNULL)
        self._process = self.simulator


class ExitingSim(SocketSim):
    code = "raise SystemExit(3)"     # the peer socket stays open: as if a child still held it


def request_within(session: CosimSession, op: str, join_s: float = 5.0) -> BaseException | None:
    """Run ``session.request(op)`` in a thread; what it raised, or fail if it is still waiting."""
    outcome: list[BaseException | None] = []

    def run():
        try:
            session.request(op)
            outcome.append(None)
        except BaseException as error:          # handed to the test thread
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(join_s)
    if worker.is_alive():
        session.peer.close()                    # unblock it, then fail: it had no deadline
        worker.join(5.0)
        pytest.fail(f"CosimSession.request({op!r}) was still waiting after {join_s} s")
    return outcome[0]


@pytest.fixture
def sessions():
    made: list[SocketSim] = []
    yield made
    for session in made:
        session.close()
        session.peer.close()
        shutil.rmtree(session.log_file.parent, ignore_errors=True)   # kept because it failed


def test_a_hung_simulator_times_out_and_is_stopped(sessions):
    session = SocketSim(preset("tiny"), memory_bytes=1 << 16, request_timeout_s=0.3)
    sessions.append(session)
    error = request_within(session, "NOW")
    assert isinstance(error, CosimError) and isinstance(error, SystoleError)
    assert one_line(str(error)) == (f"the simulator did not answer NOW(0x0, 0x0) within 0.3 s "
                                    f"(request_timeout_s); it was stopped; see {session.log_file}")
    assert session.simulator.wait(timeout=5) != 0                      # killed, not left running
    with pytest.raises(CosimError, match="session is closed"):
        session.request("NOW")


def test_a_simulator_that_exited_is_noticed_long_before_the_deadline(sessions):
    session = ExitingSim(preset("tiny"), memory_bytes=1 << 16, request_timeout_s=60.0)
    sessions.append(session)
    session.simulator.wait(timeout=5)
    error = request_within(session, "READ32", join_s=3.0)
    assert isinstance(error, CosimError)
    assert one_line(str(error)).startswith("the simulator exited (status 3) before answering "
                                           "READ32(0x0, 0x0): ")


@pytest.mark.parametrize("timeout", [0, -1.0, math.nan, math.inf])
def test_a_simulator_deadline_must_be_a_finite_positive_number(timeout):
    with pytest.raises(ValueError, match=r"request_timeout_s=.* must be a finite number of seconds > 0"):
        SocketSim(preset("tiny"), memory_bytes=1 << 16, request_timeout_s=timeout)


# -- the driver's waits ----------------------------------------------------------------
CONFIG = preset("tiny")
CTRL = by_name("CTRL")
CTRL_BITS = {f.name: f.mask for f in CTRL.fields}


class StuckAccelerator:
    """A polled ``RegisterBus``: a Systole accelerator by its identity that never finishes a
    job, and returns to idle only when ``idles``; every access costs 0.1 ms of fake time."""

    has_irq = False

    def __init__(self, idles: bool = True, garbage_cycles: bool = False):
        self.values = {reg.offset: const_value(reg, CONFIG) for reg in REGISTERS if reg.kind == "const"}
        self.idles, self.garbage_cycles = idles, garbage_cycles
        self.time = 0.0

    def _tick(self) -> None:
        self.time += 1e-4
        if self.time > BUDGET_S:
            raise Overrun(f"the driver kept polling for {self.time:.2f} fake seconds")

    def read32(self, offset: int) -> int:
        self._tick()
        if offset == CTRL.offset:
            return CTRL_BITS["ap_idle"] if self.idles else 0
        if self.garbage_cycles and offset == by_name("CYCLES_HI").offset:
            return int(self.time * 1e4) & 0xFFFF_FFFF          # a different value on every read
        return self.values.get(offset, 0)

    def write32(self, offset: int, value: int) -> None:
        self._tick()

    def wait_irq(self, timeout_s: float) -> bool:
        return False

    def now(self) -> float:
        return self.time


def driver_on(bus: StuckAccelerator, **kwargs) -> Driver:
    return Driver(bus, MemoryWindow(np.zeros(1 << 16, np.uint8), 0), CONFIG, **kwargs)


def run_one_job(driver: Driver, **kwargs):
    stride = CONFIG.bus_bytes
    return driver.run_job(a_addr=0, w_addr=0x1000, c_addr=0x2000, m=1, n=1, k=1, a_stride=stride,
                          c_stride=stride, precheck=False, **kwargs)


def test_a_job_that_never_finishes_names_the_wait_and_its_length():
    bus = StuckAccelerator()
    driver = driver_on(bus)
    started = bus.time
    with pytest.raises(AcceleratorTimeout) as caught:
        run_one_job(driver, timeout_s=0.01)
    assert one_line(str(caught.value)) == ("job M=1 N=1 K=1 did not finish within 10.000 ms (polling "
                                           "ap_done); the accelerator was soft-reset")
    assert bus.time - started < 0.01 + 0.005


def test_a_soft_reset_that_never_idles_names_the_wait_and_its_length():
    bus = StuckAccelerator(idles=False)
    with pytest.raises(AcceleratorTimeout) as caught:
        driver_on(bus)                  # the driver soft-resets the accelerator when it starts
    assert one_line(str(caught.value)).startswith("accelerator did not return to idle (CTRL.ap_idle) "
                                                  "within 100 ms of a soft reset; ")
    assert bus.time < 0.1 + 0.005


@pytest.mark.parametrize("option", ["timeout_s", "timeout_scale", "min_timeout_s"])
@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -1.0])
def test_a_driver_deadline_that_could_never_pass_is_refused(option, value):
    # now() > NaN is never true: such a deadline would poll forever.
    bus = StuckAccelerator()
    with pytest.raises(ValueError, match=rf"{option}=.* must be a finite number.* > 0"):
        if option == "timeout_s":
            run_one_job(driver_on(bus), timeout_s=value)
        else:
            driver_on(bus, **{option: value})


def test_a_cycle_counter_that_never_reads_consistently_is_an_error():
    driver = driver_on(StuckAccelerator(garbage_cycles=True))
    with pytest.raises(AcceleratorError, match="CYCLES_HI changed between reads 4 times in a row"):
        driver.cycles()


def test_every_host_error_is_a_systole_error():
    for error in (LinkError, link_module.LinkOpenError, LinkTimeout, CosimError, AcceleratorError):
        assert issubclass(error, SystoleError) and issubclass(error, RuntimeError)
