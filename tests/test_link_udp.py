"""host/platforms/udp.py (``UdpLink``) against the Python Ethernet bridge of tests/udp_board.py.

The board model applies protocol 2.0 as ``hdl.spec.link_protocol`` states it and runs
each job with the golden model, so the real driver's matmuls come back bit for bit;
faults (drop, duplicate, reorder, corrupt) in both directions by a seeded schedule check
that results stay exact and that every state-changing request the host meant runs
exactly once. No timing is asserted.
"""

from __future__ import annotations

import ctypes
import random
import socket
import threading
from collections import Counter

import numpy as np
import pytest

from hdl.spec.boards import BOARDS
from hdl.spec.config import preset
from hdl.spec.link_protocol import PROTOCOL_VERSION, Command, Status, crc16, decode_response, encode_request, \
    encode_response
from host.accel.driver import Driver
from host.accel.golden import golden_matmul
from host.accel.pack import pack_weights
from host.platforms import nexys_video
from host.platforms.link import LinkDeviceError, LinkMemory, LinkOpenError, LinkRegisterBus, LinkTimeout, \
    LinkWrongDevice
from host.platforms.udp import (_RESPONSE_PAYLOAD, UdpLink, _BadCrc, _encode_request, bulk_library, is_udp_address,
                                parse_address)
from udp_board import Faults, UdpBoard

CONFIG = preset("nexys_video")
ETH = BOARDS["nexys_video"].ethernet
DDR = BOARDS["nexys_video"].dram_window
MEMORY = 4 << 20


def connect(board: UdpBoard, **kwargs) -> UdpLink:
    kwargs = {"timeout_s": 0.03, "retries": 30, **kwargs}
    return UdpLink.open(board.url, ETH.ip_address, ETH.udp_port, **kwargs)


class Recorder:
    """The host's intent: every register write and memory write the driver asks for."""

    def __init__(self, link: UdpLink):
        self.registers: list[tuple[int, int]] = []
        self.chunks: Counter = Counter()
        write_reg, write_mem = link.write_reg, link.write_mem

        def record_reg(offset, value):
            self.registers.append((offset, value))
            write_reg(offset, value)

        def record_mem(address, data):
            data = bytes(memoryview(data).cast("B"))
            for start, offset, length in link._chunks(address, len(data)):
                self.chunks[(start, data[offset:offset + length])] += 1
            write_mem(address, data)

        run_window, submit = link.run_window, link.submit
        self.jobs = 0

        def record_a(address: int, data: bytes) -> None:
            for start, offset, length in link._chunks(address, len(data)):
                self.chunks[(start, data[offset:offset + length])] += 1
            self.jobs += 1

        def record_window(job):                  # the Python window: A already staged
            record_a(job.a_address, job.a.tobytes())
            return run_window(job)

        def record_submit(io, read_values, read_count):     # the compiled job: A staged by it
            a = np.ctypeslib.as_array((ctypes.c_int8 * (io.m * io.k)).from_address(io.a)).reshape(io.m, io.k)
            staged = np.zeros((io.m, io.a_stride), np.int8)
            staged[:, :io.k] = a
            record_a(io.a_buf, staged.tobytes())
            return submit(io, read_values, read_count)

        link.write_reg, link.write_mem = record_reg, record_mem
        link.run_window, link.submit = record_window, record_submit
        self.link = link

    def check(self, board: UdpBoard) -> None:
        """Each register write ran once, in order; each memory chunk once (a job's A
        too), and each job's REPLAY once."""
        registers = [(addr, int.from_bytes(payload, "little")) for cmd, _, addr, payload in board.executed
                     if cmd == Command.REG_WRITE]
        chunks = Counter((addr, payload) for cmd, _, addr, payload in board.executed
                         if cmd in (Command.MEM_WRITE, Command.MEM_WRITE_AFTER))
        assert registers == self.registers
        assert chunks == self.chunks
        replays = [cmd for cmd, _, _, _ in board.executed if cmd in (Command.REPLAY, Command.REPLAY_AFTER)]
        assert replays.count(Command.REPLAY_AFTER) == self.jobs
        seqs = [seq for _, seq, _, _ in board.executed]
        assert len(seqs) == len(set(seqs))


def run_matmuls(link: UdpLink, shapes, seed: int = 0) -> None:
    """Matmuls of ``shapes`` through the real driver over ``link``, each equal to golden."""
    rng = np.random.default_rng(seed)
    driver = Driver(LinkRegisterBus(link), LinkMemory(link, DDR.base, MEMORY), CONFIG)
    for m, n, k in shapes:
        w = rng.integers(-128, 128, (n, k), dtype=np.int8)
        handle = driver.load_matrix(w)
        for rows in (m, 1):
            a = rng.integers(-128, 128, (rows, k), dtype=np.int8)
            expected = golden_matmul(a, pack_weights(w, CONFIG.cols, CONFIG.weight_ports))
            np.testing.assert_array_equal(driver.matmul(a, handle), expected)
        driver.free(handle.buffer)


SHAPES = [(3, 40, 300), (9, 70, 1100)]


@pytest.fixture
def board():
    with UdpBoard(CONFIG, memory_bytes=MEMORY) as running:
        yield running


def test_hello_reports_the_bridge(board):
    board.last_seq = 1234
    with connect(board) as link:
        info = link.hello()
    assert (info.version, info.max_payload, info.bus_bytes, info.last_seq) == (PROTOCOL_VERSION, 1024, 16, 1234)


def test_registers_and_memory_round_trip_across_windows(board):
    with connect(board) as link:
        link.write_reg(0x10, 0xDEADBEEF)
        assert link.read_reg(0x10) == 0xDEADBEEF
        data = np.random.default_rng(1).integers(0, 256, 70_001, dtype=np.uint8).tobytes()
        link.write_mem(DDR.base + 3, data)                 # unaligned, 69 windows
        assert link.read_mem(DDR.base + 3, len(data)) == data
        assert link.read_mem(DDR.base + 1000, 30) == data[997:1027]       # across a window edge
        assert link.exchanges[Command.MEM_WRITE] == 69
        with pytest.raises(LinkDeviceError, match=r"MEM_READ at 0x[0-9a-f]+ failed: AXI_DECERR"):
            link.read_mem(DDR.base + MEMORY - 8, 16)


def test_write_numbers_pass_255_and_wrap_at_65536(board):
    board.last_seq = 65_500
    with connect(board) as link:
        for value in range(300):
            link.write_reg(0x10, value)
        link.write_mem(DDR.base, bytes(range(200)) * 50)
    assert board.last_seq == (65_500 + 300 + 10) % 65_536
    assert len(board.executed) == 310


def test_matmuls_are_exact_and_every_write_runs_once(board):
    with connect(board) as link:
        recorder = Recorder(link)
        run_matmuls(link, SHAPES)
    recorder.check(board)
    assert board.registers.jobs == 2 * len(SHAPES)


FAULTS = {
    "drop": dict(drop=0.1),
    "duplicate": dict(duplicate=0.1),
    "reorder": dict(reorder=0.1),
    "corrupt": dict(corrupt=0.1),
    "mixed": dict(drop=0.03, duplicate=0.03, reorder=0.03, corrupt=0.03),
}


@pytest.mark.parametrize("compiled", [True, False], ids=["udp_bulk.c", "python"])
@pytest.mark.parametrize("seed", [11, 12, 13])
@pytest.mark.parametrize("kind", FAULTS)
def test_faults_in_both_directions_keep_results_exact_and_writes_single(kind, seed, compiled):
    """The bulk windows in firmware/udp_bulk.c and in Python under the same faults."""
    inbound, outbound = Faults(**FAULTS[kind], seed=seed), Faults(**FAULTS[kind], seed=seed + 100)
    with UdpBoard(CONFIG, memory_bytes=MEMORY, inbound=inbound, outbound=outbound) as board:
        with connect(board, timeout_s=0.01, retries=60) as link:
            assert link.compiled_bulk, bulk_library()[1]
            if not compiled:
                link._bulk = None
            recorder = Recorder(link)
            run_matmuls(link, SHAPES[:1], seed=3)
            data = np.random.default_rng(4).integers(0, 256, 40_000, dtype=np.uint8).tobytes()
            link.write_mem(DDR.base + (2 << 20), data)
            assert link.read_mem(DDR.base + (2 << 20), len(data)) == data
    recorder.check(board)
    for name in FAULTS[kind]:
        assert inbound.counts[name] + outbound.counts[name] > 0, f"no {name} fault happened"


def test_windows_waiting_in_the_kernel_survive_faults():
    """A timeout long enough for the kernel waits (SO_RCVTIMEO, then poll near a deadline)."""
    faults = dict(drop=0.04, duplicate=0.04, reorder=0.04, corrupt=0.04)
    inbound, outbound = Faults(**faults, seed=21), Faults(**faults, seed=121)
    with UdpBoard(CONFIG, memory_bytes=MEMORY, inbound=inbound, outbound=outbound) as board:
        with connect(board, timeout_s=0.15, retries=20) as link:
            recorder = Recorder(link)
            data = np.random.default_rng(5).integers(0, 256, 50_000, dtype=np.uint8).tobytes()
            link.write_mem(DDR.base + 5, data)
            assert link.read_mem(DDR.base + 5, len(data)) == data
            assert link.resent > 0
    recorder.check(board)


def test_the_fast_request_encoder_is_encode_request():
    rng = random.Random(1)
    for _ in range(3000):
        command, seq = rng.choice(list(Command)), rng.randrange(1 << 16)
        address, length = rng.randrange(1 << 64), rng.randrange(1 << 16)
        payload = rng.randbytes(rng.choice((0, 1, 4, rng.randrange(2048), 1024)))
        expected = encode_request(command, seq, address, length, payload)
        assert _encode_request(command, seq, address, length, memoryview(payload)) == expected
        assert _encode_request(command, seq, address, length, payload) == expected


def test_the_answer_parser_is_decode_response():
    """``UdpLink._parse`` on whole, cut, padded, damaged and foreign datagrams decides as
    ``decode_response`` does: the fields and payload, not a frame, or a failed CRC."""
    rng = random.Random(2)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    link = UdpLink(sock, name="udp://test")
    try:
        for _ in range(3000):
            frame = bytearray(encode_response(rng.randrange(256), rng.randrange(1 << 16), rng.choice(list(Status)),
                                              rng.randbytes(rng.choice((0, 1, 4, rng.randrange(1100))))))
            damage = rng.randrange(6)
            if damage == 1:
                frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
            elif damage == 2:
                frame = frame[:rng.randrange(len(frame))]
            elif damage == 3:
                frame += rng.randbytes(rng.randrange(1, 5))
            elif damage == 4:
                frame = bytearray(rng.randbytes(rng.randrange(12)))
            link._buffer[:len(frame)] = frame
            try:
                fields, payload = decode_response(bytes(frame))
            except ValueError as error:
                if "CRC" in str(error):
                    with pytest.raises(_BadCrc):
                        link._parse(len(frame))
                else:
                    assert link._parse(len(frame)) is None
                continue
            cmd, seq, status, end = link._parse(len(frame))
            assert (cmd, seq, status) == (fields["cmd"], fields["seq"], fields["status"])
            assert link._buffer[_RESPONSE_PAYLOAD:end] == payload
    finally:
        link.close()


def test_a_silent_address_times_out_in_one_line():
    quiet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    quiet.bind(("127.0.0.1", 0))
    url = f"udp://127.0.0.1:{quiet.getsockname()[1]}"
    try:
        with UdpLink.open(url, ETH.ip_address, ETH.udp_port, timeout_s=0.01, retries=2) as link:
            with pytest.raises(LinkTimeout) as caught:
                link.hello()
    finally:
        quiet.close()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{url}: HELLO: no answer (3 sends of 0.01 s)")


def test_the_compiled_crc_is_the_protocols():
    """firmware/udp_bulk.c's CRC-16 equals hdl.spec.link_protocol's (binascii.crc_hqx)."""
    lib = bulk_library()[0]
    assert lib is not None, bulk_library()[1]
    rng = np.random.default_rng(9)
    for size in (0, 1, 13, 1024, 4099):
        data = rng.integers(0, 256, size, dtype=np.uint8)
        for start in (0xFFFF, 0x1D0F):
            assert lib.systole_crc16(data.ctypes.data, size, start) == crc16(data.tobytes(), start)


@pytest.mark.parametrize("compiled", [True, False], ids=["udp_bulk.c", "python"])
def test_bulk_transfers_fail_in_one_line(compiled):
    """A bulk write the bridge refuses (outside its memory: AXI_DECERR) raises
    LinkDeviceError naming the request; a bridge that falls silent mid-transfer gives
    LinkTimeout naming the request and its sends; a read answered with the wrong length
    is a wrong device. The same lines from the compiled and the Python windows."""
    with UdpBoard(CONFIG, memory_bytes=MEMORY) as board:
        with connect(board, timeout_s=0.01, retries=2) as link:
            link.hello()
            if not compiled:
                link._bulk = None
            beyond = DDR.base + MEMORY + 1000
            with pytest.raises(LinkDeviceError, match=r"AXI_DECERR") as caught:
                link.write_mem(beyond, bytes(3000))
            assert "\n" not in str(caught.value)
            board.inbound = Faults(drop=1.0, seed=3)
            with pytest.raises(LinkTimeout) as caught:
                link.write_mem(DDR.base, bytes(5000))
            message = str(caught.value)
            assert "\n" not in message and "no answer (3 sends of 0.01 s)" in message
            assert "MEM_WRITE of 1024 bytes at" in message and "(of MEM_WRITE of 5000 bytes" in message
            board.inbound = Faults(seed=4)
            short = board.handle

            def short_reads(datagram):
                answer = short(datagram)
                if answer is not None and datagram[1] == Command.MEM_READ:
                    seq = int.from_bytes(datagram[2:4], "little")
                    return encode_response(Command.MEM_READ, seq, Status.OK, b"\x00" * 7)
                return answer

            board.handle = short_reads
            with pytest.raises(LinkWrongDevice, match=r"MEM_READ of 1024 bytes at .* returned 7 bytes"):
                link.read_mem(DDR.base, 2048)


def test_a_udp_responder_that_is_not_a_bridge_is_a_wrong_device():
    echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    echo.bind(("127.0.0.1", 0))
    echo.settimeout(0.01)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                datagram, peer = echo.recvfrom(4096)
            except socket.timeout:
                continue
            echo.sendto(datagram, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        url = f"udp://127.0.0.1:{echo.getsockname()[1]}"
        with UdpLink.open(url, ETH.ip_address, ETH.udp_port, timeout_s=0.01, retries=1) as link:
            with pytest.raises(LinkWrongDevice, match=f"^{url}: something answers, but with no link frames"):
                link.hello()
    finally:
        stop.set()
        thread.join()
        echo.close()


def test_the_board_drops_datagrams_that_are_not_one_frame(board):
    frame = encode_request(Command.HELLO, 1, 0, 0)
    assert board.handle(frame + b"x") is None and board.handle(b"\x00" * 20) is None
    assert board.handle(frame) is not None


@pytest.mark.parametrize("text", ["192.168.1.50", "192.168.1.50:21337", "udp://board.lan", "udp://10.0.0.2:5",
                                  "udp://", "udp"])
def test_addresses_that_mean_udp(text):
    assert is_udp_address(text)
    host, port = parse_address(text, ETH.ip_address, ETH.udp_port)
    assert port in (ETH.udp_port, 21337, 5) and host


@pytest.mark.parametrize("text", ["/dev/ttyUSB0", "COM3", "socket://localhost:5000", "loop://", "rfc2217://h:1"])
def test_serial_ports_are_not_udp(text):
    assert not is_udp_address(text)


def test_default_address_is_the_boards():
    assert parse_address("udp://", ETH.ip_address, ETH.udp_port) == ("192.168.1.50", 21337)
    assert parse_address("192.168.1.50", ETH.ip_address, ETH.udp_port) == ("192.168.1.50", 21337)


@pytest.mark.parametrize("text, reason", [
    ("300.1.2.3", "'300.1.2.3' is not an IPv4 address"),
    ("192.168.1.50:99999", "port '99999' is not a number in 1..65535"),
    ("192.168.1.50:abc", "port 'abc' is not a number in 1..65535"),
    ("udp://bad_host!:5", "'bad_host!' is not a host name or IPv4 address"),
    ("udp://[::1]:5", "IPv6 addresses are not supported"),
])
def test_bad_addresses_are_one_line(text, reason):
    with pytest.raises(LinkOpenError) as caught:
        parse_address(text, ETH.ip_address, ETH.udp_port)
    assert str(caught.value) == f"cannot open {text}: {reason}" or str(caught.value).startswith(
        f"cannot open {text}: {reason}")


def test_open_link_picks_udp_from_the_address(board, monkeypatch):
    monkeypatch.setenv("SYSTOLE_LINK", board.url)
    bus, memory = nexys_video.open_link(timeout_s=0.05)
    with bus.link:
        assert isinstance(bus.link, UdpLink) and bus.link.name == board.url
        assert (memory.device_address, memory.size) == (DDR.base, DDR.size)


def test_the_cli_probes_the_board_over_udp(board, capsys):
    assert nexys_video.main(["--address", board.url, "--timeout", "0.05"]) == 0
    out = capsys.readouterr().out
    assert f"bridge: protocol v{PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]}" in out and f"over {board.url}" in out and "DDR window: 0x80000000" in out


def test_the_cli_refuses_a_bad_address_in_one_line(capsys):
    assert nexys_video.main(["--address", "192.168.1.50:0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "cannot open 192.168.1.50:0: port '0' is not a number in 1..65535" in err


def test_the_ethernet_projection_counts_the_real_drivers_traffic():
    from gen.liteeth import CLOCK
    from host.perf.ethernet import CORE_CLOCK, count_token, wire_s
    from host.perf.projection import MatmulShape

    assert CORE_CLOCK == CLOCK                           # the projection's clock is the core's
    assert wire_s(16) == 84 / 125e6                     # padded to the 64-byte minimum frame
    assert wire_s(1040) == (8 + 14 + 20 + 8 + 1040 + 4 + 12) / 125e6
    shapes = [MatmulShape("q", "attn_q", 40, 300), MatmulShape("o", "attn_o", 70, 4096 + 8)]
    traffic = count_token("two jobs", shapes)
    assert traffic.jobs == 3                             # K above max_k is two jobs
    # Protocol 2.2: each job one window, A's writes, the REPLAY, C's ordered reads.
    assert [e.command for e in traffic.exchanges] == ["JOB"] * 3
    a_writes = [1, 4, 1]                                 # 300, 4096 and 8 bytes of A (1 KiB datagrams)
    for exchange, writes in zip(traffic.exchanges, a_writes):
        assert exchange.commands == ("MEM_WRITE",) + ("MEM_WRITE_AFTER",) * (writes - 1) + \
            ("REPLAY_AFTER", "MEM_READ_AFTER")
    assert traffic.stop_and_wait == 3
    # As protocol 2.1 ran it: A in a window, its register sequence in one REPLAY, C in a window.
    three = count_token("two jobs", shapes, job_windows=False)
    assert Counter(e.command for e in three.exchanges) == {"MEM_WRITE": 3, "REPLAY": 3, "MEM_READ": 3}
    assert three.datagrams == traffic.datagrams and three.bytes_out == traffic.bytes_out


def test_the_projection_measures_the_host_per_job_every_way():
    """``count_token(repeats=)``: each job's host CPU submitted by compiled code, from the
    driver's Python and in the Python window, answered by a playback of the bridge
    model's answers (the same results as the model: the driver, and the compiled
    submission's status, check every job's outcome). A compiled submission is all
    inside the window; the driver's ways spend some CPU outside it."""
    from host.perf.ethernet import WAYS, count_token
    from host.perf.projection import MatmulShape

    traffic = count_token("one job", [MatmulShape("q", "attn_q", 40, 300)], repeats=3)
    (_, cpu), = traffic.costs
    assert set(cpu) == set(WAYS)
    for way in WAYS:
        if way == "submitted":
            assert 0 < cpu[way].inside[0] == cpu[way].total[0] <= cpu[way].total[1]
        else:
            assert 0 < cpu[way].inside[0] < cpu[way].total[0] <= cpu[way].total[1]
        assert traffic.link_s(way, 0.0, 0) <= traffic.link_s(way, 0.0, 0, overlap=False)
    three = count_token("one job", [MatmulShape("q", "attn_q", 40, 300)], job_windows=False, repeats=2)
    assert set(three.costs[0][1]) == {"compiled", "python"}          # 2.1: no compiled submission


def test_the_playback_answers_as_recorded_under_the_requests_seq():
    """host.perf.ethernet's Playback: the n-th request gets the n-th recorded answer
    (cyclically) under the request's seq, with a CRC the protocol's decoder accepts; a
    request of another command than the answer's is refused, and named at the end."""
    from host.perf.ethernet import Playback

    answers = [encode_response(Command.MEM_READ, 5, Status.OK, bytes(range(16))),
               encode_response(Command.REPLAY_AFTER, 9, Status.OK, b"\x01")]
    sent = [(Command.MEM_READ, 300), (Command.REPLAY_AFTER, 301), (Command.MEM_READ, 65535)]
    with pytest.raises(RuntimeError, match=r"request 3 was not the recorded answer's command"):
        with Playback(answers) as playback, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(playback.address)
            sock.settimeout(5)
            for index, (command, seq) in enumerate(sent):
                sock.send(encode_request(command, seq, 0x1000, 16))
                fields, payload = decode_response(sock.recv(65536))
                recorded, recorded_payload = decode_response(answers[index % 2])
                assert fields == {**recorded, "seq": seq} and payload == recorded_payload
            sock.send(encode_request(Command.REG_READ, 7, 0x10, 4))   # a MEM_READ's turn
            sock.settimeout(0.2)
            with pytest.raises(socket.timeout):
                sock.recv(65536)
    assert playback.answered.value == len(sent)


def test_generate_over_udp_as_the_readme_says(tmp_path, monkeypatch, capsys):
    """``SYSTOLE_LINK_PORT=<ip:port> python -m host.llm.generate --backend link --preset
    nexys_video``: a llama2.c model through the bridge model over UDP prints the golden
    backend's text."""
    from host.llm.generate import main
    from tests.host_testmodels import write_tiny_llama2c
    model, tokenizer = write_tiny_llama2c(tmp_path)
    common = ["--model", str(model), "--tokenizer", str(tokenizer), "--preset", "nexys_video",
              "--quant", "per-channel", "--prompt", "Once upon a time", "--max-new-tokens", "6", "--no-profile"]
    assert main([*common, "--backend", "golden"]) == 0
    want = capsys.readouterr().out
    from_python = []
    submit = UdpLink.submit
    monkeypatch.setattr(UdpLink, "submit", lambda link, *args: from_python.append(1) or submit(link, *args))
    with UdpBoard(CONFIG, memory_bytes=MEMORY) as board:
        monkeypatch.setenv("SYSTOLE_LINK_PORT", board.url.removeprefix("udp://"))
        assert main([*common, "--backend", "link"]) == 0
        got = capsys.readouterr().out
        jobs = board.registers.jobs
    text = want.split("\n\n-- ")[0]                   # the text, before the timing lines
    assert text.startswith("Once upon a time") and got.split("\n\n-- ")[0] == text
    assert jobs > 0 and "-- accelerator (decode):" in got
    # The prompt's jobs come from the driver's Python; the decode tokens' from the fused
    # decoder's compiled code (systole_udp_job through its address), attention on the host.
    assert 0 < len(from_python) < jobs and "attention on the accelerator" not in got


def test_the_ethernet_projection_prices_a_replay_by_its_register_accesses():
    from hdl.spec.link_protocol import REQUEST_OVERHEAD, RESPONSE_OVERHEAD, encode_replay, replay_answer_length
    from host.perf.ethernet import board_cycles, replay_counts, replay_cycles

    payload = encode_replay(status_offset=0, busy_mask=1, ctrl_offset=0, start=1, done_mask=2, timeout=10,
                            writes=[(0x10 + 4 * i, i) for i in range(9)], reads=[0x50, 0x54, 0x44])
    request, answer = REQUEST_OVERHEAD + len(payload), RESPONSE_OVERHEAD + replay_answer_length(3)
    assert replay_counts(request, answer) == (9, 3)
    # The frames' bytes and the sequence of accesses; no job time (the accelerator's).
    assert board_cycles("REPLAY", request, answer, 0) == board_cycles("HELLO", request, answer, 0) \
        + replay_cycles(9, 3)
    assert replay_cycles(9, 3) == replay_cycles(0, 0) + 9 * 17 + 3 * 12


# -- a job in one window (protocol 2.2) ---------------------------------------------------------

class _JobBoard(UdpBoard):
    """A bridge model that answers every request of ``command`` with ``status``."""

    def __init__(self, *args, command: Command, status: Status, **kwargs):
        super().__init__(*args, **kwargs)
        self.refuse = (command, status)

    def handle(self, datagram: bytes):
        from hdl.spec.link_protocol import REQUEST_LAYOUT, SYNC_BYTES, encode_response
        fields = REQUEST_LAYOUT.unpack(datagram[SYNC_BYTES:])
        if fields["cmd"] == self.refuse[0]:
            return encode_response(fields["cmd"], fields["seq"], self.refuse[1])
        return super().handle(datagram)


def test_a_job_is_one_window_and_the_2_1_way_gives_the_same_result(board):
    """The driver hands the link whole jobs (one window each: the REPLAY_AFTER between A's
    writes and C's ordered reads); switched off, the same driver runs three exchanges."""
    with connect(board) as link:
        run_matmuls(link, SHAPES[:1], seed=6)
        windows = link.exchanges.get(Command.REPLAY_AFTER, 0)
        assert windows == 2 and Command.REPLAY not in link.exchanges
        link.job_windows = False
        run_matmuls(link, SHAPES[:1], seed=6)
        assert link.exchanges[Command.REPLAY] == 2 and link.exchanges[Command.REPLAY_AFTER] == windows
    # C larger than the reads sent behind the REPLAY: the rest follows its answer.
    with connect(board) as link:
        run_matmuls(link, [(1, 3000, 64)], seed=7)              # 12 KB of C: 12 datagrams
        assert link.exchanges[Command.MEM_READ_AFTER] == 2 * 8


@pytest.mark.parametrize("command, status, message", [
    (Command.MEM_READ_AFTER, Status.EARLY, r"\(\d+ times in \d+ sends: the request numbered before it never "
                                            r"ran\): MEM_READ_AFTER at 0x[0-9a-f]+ failed: EARLY"),
    (Command.REPLAY_AFTER, Status.BAD_LENGTH, r"REPLAY_AFTER at 0x0 failed: BAD_LENGTH"),
    (Command.MEM_WRITE_AFTER, Status.BAD_ADDRESS, r"MEM_WRITE_AFTER at 0x[0-9a-f]+ failed: BAD_ADDRESS"),
])
@pytest.mark.parametrize("compiled", [True, False], ids=["udp_bulk.c", "python"])
def test_a_job_window_that_cannot_complete_fails_in_one_line(command, status, message, compiled):
    """The same lines from the compiled and the Python job windows."""
    with _JobBoard(CONFIG, memory_bytes=MEMORY, command=command, status=status) as board:
        with connect(board, timeout_s=0.01, retries=3) as link:
            if not compiled:
                link._bulk = None
            with pytest.raises(LinkDeviceError, match=message) as failure:
                run_matmuls(link, [(1, 40, 2000)])           # A of 2 KB: a MEM_WRITE_AFTER
    assert "\n" not in str(failure.value)


# -- jobs submitted by compiled code (the fused decoder's way) -----------------------------------

@pytest.mark.parametrize("kind", ["mixed", "drop", "corrupt"])
def test_compiled_code_submits_jobs_over_the_link_exactly_once(kind):
    """``Driver.compiled_job`` over UDP (``systole_udp_job``): A staged, the window, C's
    rest after the REPLAY's answer, C copied out, equal to golden under faults; each
    job runs once, and the Python requests between them are numbered after theirs."""
    inbound, outbound = Faults(**FAULTS[kind], seed=21), Faults(**FAULTS[kind], seed=121)
    rng = np.random.default_rng(8)
    submitted = 0
    with UdpBoard(CONFIG, memory_bytes=MEMORY, inbound=inbound, outbound=outbound) as board:
        with connect(board, timeout_s=0.01, retries=60) as link:
            driver = Driver(LinkRegisterBus(link), LinkMemory(link, DDR.base, MEMORY), CONFIG)
            assert driver.compiled_epoch() is not None, bulk_library()[1]
            for m, n, k in [(1, 70, 300), (3, 40, 1100), (1, 3000, 64)]:     # the last: 12 KB of C
                w = rng.integers(-128, 128, (n, k), dtype=np.int8)
                handle = driver.load_matrix(w)
                a, c = np.zeros((m, k), np.int8), np.zeros((m, n), np.int32)
                job = driver.compiled_job(handle, a, c)
                for round_ in range(3):
                    a[:] = rng.integers(-128, 128, (m, k), dtype=np.int8)
                    assert job.submit() == 1
                    submitted += 1
                    assert job.after[-1] == 0                                # ERR_CODE
                    np.testing.assert_array_equal(c, golden_matmul(a, pack_weights(w, CONFIG.cols,
                                                                                   CONFIG.weight_ports)))
                    link.write_reg(0x10, round_)
                    assert link.read_reg(0x10) == round_
                    if round_ == 0:          # a new HELLO (as after a STALE write): the same limits,
                        epoch = driver.compiled_epoch()          # so the epoch and every bound job stand
                        link.hello()
                        assert driver.compiled_epoch() == epoch
                driver.free(handle.buffer)
            assert link.exchanges[Command.REPLAY_AFTER] == submitted
    replays = [cmd for cmd, _, _, _ in board.executed if cmd == Command.REPLAY_AFTER]
    assert len(replays) == submitted == board.registers.jobs
    seqs = [seq for _, seq, _, _ in board.executed]
    assert len(seqs) == len(set(seqs))
    for name in FAULTS[kind]:
        assert inbound.counts[name] + outbound.counts[name] > 0, f"no {name} fault happened"


@pytest.mark.parametrize("command, status, shape, message", [
    (Command.REPLAY_AFTER, Status.BAD_LENGTH, (1, 40, 300), r"REPLAY_AFTER at 0x0 failed: BAD_LENGTH"),
    (Command.MEM_WRITE_AFTER, Status.BAD_ADDRESS, (1, 40, 2000),
     r"MEM_WRITE_AFTER at 0x[0-9a-f]+ failed: BAD_ADDRESS"),
    (Command.MEM_READ, Status.BAD_ADDRESS, (1, 3000, 64), r"MEM_READ at 0x[0-9a-f]+ failed: BAD_ADDRESS"),
])
def test_a_compiled_submission_that_fails_gets_the_links_line(command, status, shape, message):
    """A link failure inside ``systole_udp_job`` returns -3, and the driver's error path
    raises the line the Python path raises (the last: C's rest, after the window)."""
    from host.accel.driver import JOB_LINK_FAILED
    m, n, k = shape
    with _JobBoard(CONFIG, memory_bytes=MEMORY, command=command, status=status) as board:
        with connect(board, timeout_s=0.01, retries=3) as link:
            driver = Driver(LinkRegisterBus(link), LinkMemory(link, DDR.base, MEMORY), CONFIG)
            handle = driver.load_matrix(np.ones((n, k), np.int8))
            job = driver.compiled_job(handle, np.ones((m, k), np.int8), np.zeros((m, n), np.int32))
            status_ = job.submit()
            assert status_ == JOB_LINK_FAILED
            with pytest.raises(LinkDeviceError, match=message) as failure:
                driver.compiled_job_failed(job, status_)
            with pytest.raises(LinkDeviceError, match=message):          # the Python path: the same line
                driver.matmul(np.ones((m, k), np.int8), handle)
    assert "\n" not in str(failure.value)
