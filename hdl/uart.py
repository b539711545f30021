"""8N1 UART receiver and transmitter with a fixed baud divisor.

``divisor`` is clock cycles per bit (``round(clock_hz / baud)``), at least 4. Both sides
use one start bit, 8 data bits LSB first, one stop bit, no parity; the line idles high.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "divisor_for"]


def divisor_for(clock_hz: float, baud: int) -> int:
    """Cycles per bit for ``baud`` at ``clock_hz``; ``ValueError`` if the error exceeds 2%."""
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise ValueError(f"baud={baud!r} must be a positive integer (bits per second)")
    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise ValueError(f"baud={baud} is too fast for a {clock_hz / 1e6:g} MHz clock (divisor {divisor} < 4)")
    actual = clock_hz / divisor
    if abs(actual - baud) / baud > 0.02:
        raise ValueError(f"baud={baud} at {clock_hz / 1e6:g} MHz is off by "
                         f"{abs(actual - baud) / baud:.1%} (divisor {divisor}); choose another baud rate")
    return divisor


class _Uart(wiring.Component):
    """What both directions share: ``divisor`` clock cycles per bit (at least 4)."""

    def __init__(self, divisor: int):
        if not isinstance(divisor, int) or divisor < 4:
            raise ValueError(f"divisor={divisor!r} must be an integer >= 4 (cycles per bit)")
        self.divisor = divisor
        super().__init__()


class UartRx(_Uart):
    """Receives 8N1 bytes from ``rx`` (asynchronous pin, synchronised here).

    Each byte appears on ``data`` about 2 cycles after the middle of its stop bit and is
    held until taken. A byte that arrives while the previous one is still held is dropped
    and pulses ``overrun``; a stop bit read low drops the byte and pulses ``framing_error``.
    """

    rx: In(1, init=1)
    data: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor))
        bit = Signal(range(8))
        shift = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                # Middle of the start bit: still low, or it was a glitch.
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(line):
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                # Every divisor cycles after the start bit's middle is a data bit's middle.
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.framing_error.eq(1)
                    with m.Elif(self.data.valid & ~self.data.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
        return m


class UartTx(_Uart):
    """Sends the bytes of ``data`` as 8N1 frames on ``tx``.

    A byte is taken (``data.ready``) only while the line is idle, and sent over the next
    ``10 * divisor`` cycles; back-to-back bytes leave no gap.
    """

    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits_left = Signal(range(11))   # start, 8 data, stop
        frame = Signal(9)               # data bits then the stop bit, LSB first

        with m.If(bits_left == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [self.tx.eq(0), frame.eq(self.data.payload | (1 << 8)),
                             bits_left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [bits_left.eq(bits_left - 1), timer.eq(self.divisor - 1)]
            with m.If(bits_left != 1):
                m.d.sync += [self.tx.eq(frame[0]), frame.eq(frame >> 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
