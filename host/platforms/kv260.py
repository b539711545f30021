"""The KV260 platform: Linux on the Kria's Cortex-A53s talking to the PL accelerator.

- ``UioRegisters``: the control registers through ``/dev/uioN`` (a ``generic-uio``
  node in the device-tree overlay, named ``systole``). It mmaps map 0 and waits for
  the interrupt by ``read()`` on the UIO file, with ``select`` for the timeout.
- ``UdmabufMemory``: DMA memory from the ``u-dma-buf`` driver (``/dev/udmabuf0``).
  The physical address comes from sysfs. Caches are flushed and invalidated
  through its ``sync_for_device``/``sync_for_cpu`` sysfs controls, because the HP
  ports are not cache-coherent; the range attributes are written only when they change.
  ``coherent=True`` opens a node with ``dma-coherent`` (``/dev/udmabuf1``, each job's A
  and C, read and written by coherent bursts through S_AXI_HPC0_FPD): no syncs at all.
- ``PynqMemory`` and ``PynqRegisters``: the same through PYNQ (``allocate``,
  ``MMIO``) when PYNQ is installed.

Only the ``mmap``/``read``/sysfs lines touch the board. The tests run these classes
on ordinary files, and the same ``Driver`` runs on them; ``sim/test_firmware_rtl.py``
runs them against the RTL (the u-dma-buf mapping is the simulated DDR itself; the UIO
page's word view is relayed to the simulated registers, because a file mapping cannot
react to an access the way a device page does).
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import time
from pathlib import Path

import numpy as np

from hdl.spec.config import AccelConfig

from ..accel.bus import MemoryWindow
from ..accel.driver import Driver
from ..accel.hardware import DriverBackend
from .replay import JobIo, Replayer
from .replay import library as replay_library

__all__ = ["UioRegisters", "UdmabufMemory", "PynqRegisters", "PynqMemory", "find_uio", "backend"]

_REGISTER_WINDOW = 0x1000


def find_uio(name: str = "systole", sysfs: Path = Path("/sys/class/uio")) -> Path:
    """The ``/dev/uioN`` whose UIO name is ``name``; ``FileNotFoundError`` says how to fix."""
    if sysfs.is_dir():
        for entry in sorted(sysfs.iterdir()):
            if (entry / "name").is_file() and (entry / "name").read_text().strip() == name:
                return Path("/dev") / entry.name
    raise FileNotFoundError(
        f"no UIO device named {name!r} under {sysfs}; load the Systole overlay "
        "(`sudo xmutil loadapp systole`) and make sure generic-uio is bound "
        "(kernel argument uio_pdrv_genirq.of_id=generic-uio)")


class UioRegisters:
    """``RegisterBus`` over a UIO device (or any file holding a register image)."""

    has_irq = True

    def __init__(self, path: str | os.PathLike, size: int = _REGISTER_WINDOW, irq: bool = True):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_SYNC)
        self._map = mmap.mmap(self._fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._words = np.frombuffer(self._map, dtype=np.uint32)
        # The driver's planned jobs, replayed by firmware/replay.c on the mapped page
        # (used when the driver polls; None without a C compiler).
        lib = replay_library()
        self._replayer = Replayer(lib, self._words.size) if lib is not None else None
        self._page = self._words.ctypes.data      # fixed while the mapping lives
        self.replay = self._replay if lib is not None else None
        self.job = self._job if lib is not None else None
        self.job_io = JobIo                        # the memory traffic ``job`` takes
        self.has_irq = irq
        if irq:
            self._unmask()

    def _check(self, offset: int) -> int:
        if offset % 4 or not 0 <= offset < self._words.size * 4:
            raise ValueError(f"register offset {offset:#x} is not a word inside the "
                             f"{self._words.size * 4:#x}-byte window")
        return offset // 4

    def read32(self, offset: int) -> int:
        return int(self._words[self._check(offset)])

    def write32(self, offset: int, value: int) -> None:
        self._words[self._check(offset)] = value & 0xFFFF_FFFF

    def _replay(self, *plan) -> int:
        """``Replayer`` on this page (``RegisterBus``'s optional ``replay``)."""
        if self._page is None:
            raise ValueError(f"{self.path} is closed")
        return self._replayer(self._page, *plan)

    def _job(self, *plan_and_io) -> int:
        """``Replayer.job`` on this page (``RegisterBus``'s optional ``job``)."""
        if self._page is None:
            raise ValueError(f"{self.path} is closed")
        return self._replayer.job(self._page, *plan_and_io)

    def job_entry(self) -> tuple[int, int] | None:
        """``(systole_job's address, the mapped page's address)`` for compiled code that
        submits planned jobs itself (``Driver.compiled_job``); None without the compiled
        library or once closed (the page is then unmapped: nothing may call with it)."""
        if self._replayer is None or self._page is None:
            return None
        return self._replayer.job_address, self._page

    def _unmask(self) -> None:
        os.write(self._fd, struct.pack("=I", 1))      # UIO: re-enable the interrupt

    def wait_irq(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self._fd], [], [], max(0.0, timeout_s))
        if not ready:
            return False
        os.read(self._fd, 4)                           # the interrupt count; consumes the event
        self._unmask()
        return True

    def now(self) -> float:
        return time.monotonic()

    def close(self) -> None:
        self._page = None
        del self._words
        self._map.close()
        os.close(self._fd)


class UdmabufMemory(MemoryWindow):
    """``DeviceMemory`` over a u-dma-buf device with explicit cache maintenance.

    A sync sets the device's sysfs attributes ``sync_offset``, ``sync_size`` and
    ``sync_direction``, then writes 1 to the trigger (``sync_for_device`` or
    ``sync_for_cpu``), which syncs the range the attributes hold. The driver keeps each
    attribute as last written, so an attribute is written only when its value changes:
    a sync costs one to four ``pwrite``s to files opened once. ``sync_state`` (uint64
    offset, size, direction; ``SYNC_UNKNOWN`` until written or after a failed write)
    is what the attributes hold; firmware/replay.c's ``systole_job`` reads and updates
    the same array (``io_spec``), so the Python and the compiled syncs agree.

    Every sync is ``DMA_BIDIRECTIONAL`` (direction 0), so the direction is written once:
    sync_for_device then cleans the range's lines and sync_for_cpu invalidates them on
    arm64 (``arch_sync_dma_for_device``/``for_cpu``), as TO_DEVICE and FROM_DEVICE would;
    on any architecture BIDIRECTIONAL is correct for a range either side wrote (at
    worst a clean and invalidate where one would do). It also lets one range over A and
    C serve both syncs of a job (host/accel/driver.py).

    ``readback``: make an ordinary file read back as the last value written (truncate
    after the write; the tests' stand-ins for sysfs); default: when the attributes are
    not under ``/sys``.
    """

    BIDIRECTIONAL = 0
    SYNC_UNKNOWN = np.iinfo(np.uint64).max
    _ATTRIBUTES = ("sync_mode", "sync_offset", "sync_size", "sync_direction", "sync_for_device",
                   "sync_for_cpu")
    _RANGE = ("sync_offset", "sync_size", "sync_direction")

    def __init__(self, name: str = "udmabuf0", dev: Path = Path("/dev"),
                 sysfs: Path = Path("/sys/class/u-dma-buf"), readback: bool | None = None,
                 coherent: bool = False):
        self.name = name
        self.coherent = coherent
        self._sysfs = sysfs / name
        if not self._sysfs.is_dir():
            raise FileNotFoundError(f"no u-dma-buf device {name!r} under {sysfs}; load the overlay "
                                    "with its u-dma-buf node (or `modprobe u-dma-buf`)")
        self._readback = not str(self._sysfs.resolve()).startswith("/sys/") if readback is None else readback
        device_address = int((self._sysfs / "phys_addr").read_text().strip(), 0)
        size = int((self._sysfs / "size").read_text().strip(), 0)
        self._fds = {}
        self.sync_state = np.full(3, self.SYNC_UNKNOWN, np.uint64)
        if coherent:
            # u-dma-buf's dma_coherent reads the kernel's dev_is_dma_coherent(): 1 when the
            # node has `dma-coherent`, and then its syncs are no-ops, so none is made.
            flag = self._sysfs / "dma_coherent"
            state = flag.read_text().strip() if flag.is_file() else "absent"
            if state != "1":
                raise ValueError(f"u-dma-buf {name!r} is not DMA coherent (its dma_coherent is "
                                 f"{state}): its device-tree node needs `dma-coherent;` (the "
                                 "generated systole.dtso has it) and a u-dma-buf with that attribute")
        else:
            self._fds = {attribute: os.open(self._sysfs / attribute, os.O_WRONLY | os.O_CREAT, 0o644)
                         for attribute in self._ATTRIBUTES}
            # Unknown until this process writes them: another process may have set them.
            self._write_sysfs("sync_mode", 0)       # caches on; sync by hand
        self._dev = dev / name
        self._direct = self._direct_map = None
        fd = os.open(self._dev, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        super().__init__(self._map, device_address)

    def _write_sysfs(self, attribute: str, value: int) -> None:
        self._write(self._fds[attribute], value)

    def _write(self, fd: int, value: int) -> None:
        """One ``write`` of ``value`` to an attribute file (a sysfs store reads only what
        one write gives it)."""
        data = b"%d\n" % value
        os.pwrite(fd, data, 0)
        if self._readback:
            os.ftruncate(fd, len(data))

    def _sync(self, control: str, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)
        fds, state = self._fds, self.sync_state
        for i, value in enumerate((offset, nbytes, self.BIDIRECTIONAL)):
            if state[i] != value:              # the attribute already holds it: no write
                state[i] = self.SYNC_UNKNOWN
                self._write(fds[self._RANGE[i]], value)
                state[i] = value
        self._write(fds[control], 1)

    def sync_for_device(self, offset: int, nbytes: int) -> None:
        if self.coherent:
            return self._check(offset, nbytes)
        self._sync("sync_for_device", offset, nbytes)

    def sync_for_cpu(self, offset: int, nbytes: int) -> None:
        if self.coherent:
            return self._check(offset, nbytes)
        self._sync("sync_for_cpu", offset, nbytes)

    def direct_view(self) -> np.ndarray:
        """A uint8 array over the window whose stores need no sync: the window itself
        when coherent; else a second mapping, write-combining (``sync_mode`` 2 and the
        device opened ``O_SYNC``: u-dma-buf maps it ``pgprot_writecombine``, Normal
        non-cacheable on arm64), made on the first call. For data the CPU writes and never
        reads back (the accelerator's mutable weights, ``DriverBackend``): stores go to
        DRAM through the write buffer, not the cache. The cached mapping must not write
        the same lines afterwards (a dirty line cleaned later would overwrite them), so a
        range written here is written only here."""
        if self.coherent:
            return self._bytes
        if self._direct is None:
            self._write_sysfs("sync_mode", 2)       # O_SYNC opens write-combine; others stay cached
            fd = os.open(self._dev, os.O_RDWR | os.O_SYNC)
            try:
                self._direct_map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            self._direct = np.frombuffer(self._direct_map, np.uint8)
        return self._direct

    def io_spec(self) -> tuple[int, tuple[int, ...] | None, bool, int]:
        """For a compiled job path: the window's host address, the sync attribute files
        (offset, size, direction, sync_for_device, sync_for_cpu; None when coherent),
        ``readback`` and the address of ``sync_state`` (the compiled syncs read and
        update it)."""
        if self.coherent:
            return MemoryWindow.io_spec(self)
        fds = self._fds
        return (self._bytes.ctypes.data,
                tuple(fds[name] for name in ("sync_offset", "sync_size", "sync_direction",
                                             "sync_for_device", "sync_for_cpu")),
                self._readback, self.sync_state.ctypes.data)

    def close(self) -> None:
        """Close the attribute files kept open for syncs."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


class PynqRegisters:
    """``RegisterBus`` through PYNQ's ``MMIO`` (polls ``ap_done``: no interrupt path)."""

    has_irq = False

    def __init__(self, base_address: int, size: int = _REGISTER_WINDOW):
        from pynq import MMIO
        self._mmio = MMIO(base_address, size)

    def read32(self, offset: int) -> int:
        return int(self._mmio.read(offset)) & 0xFFFF_FFFF

    def write32(self, offset: int, value: int) -> None:
        self._mmio.write(offset, value & 0xFFFF_FFFF)

    def wait_irq(self, timeout_s: float) -> bool:
        return False

    def now(self) -> float:
        return time.monotonic()


class PynqMemory(MemoryWindow):
    """``DeviceMemory`` over one PYNQ ``allocate`` buffer; syncs touch only the range."""

    def __init__(self, size: int):
        from pynq import allocate
        self._buffer = allocate(shape=(size,), dtype=np.uint8)
        super().__init__(self._buffer, int(self._buffer.physical_address))

    def sync_for_device(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)
        self._buffer[offset:offset + nbytes].flush()

    def sync_for_cpu(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)
        self._buffer[offset:offset + nbytes].invalidate()

    def direct_view(self) -> None:
        """None: the buffer is cached and synced by hand."""
        return None


def backend(config: AccelConfig) -> DriverBackend:
    """The ``device`` backend: a KV260 running the Systole overlay (``SYSTOLE_UIO`` and
    ``SYSTOLE_UDMABUF`` override the UIO and u-dma-buf names).

    The driver polls ap_done and, where ``firmware/replay.c`` compiles, replays each
    planned job in one compiled call (no syscall; a decode job lasts tens of
    microseconds, less than an interrupt's wake-up). ``SYSTOLE_IRQ=1`` waits for the
    interrupt instead (select, read and the unmask write: three syscalls a job).

    With ``config.coherent_io`` (the kv260 preset) each job's A and C live in the
    I/O-coherent u-dma-buf (``SYSTOLE_UDMABUF_SHARED``, default ``udmabuf1``: the
    overlay's node with ``dma-coherent``), which the RTL reaches through
    S_AXI_HPC0_FPD with coherent bursts: a job then makes no syscall at all. The
    weights stay in ``udmabuf0``, synced once when loaded."""
    irq = os.environ.get("SYSTOLE_IRQ", "0") not in ("", "0")
    registers = UioRegisters(find_uio(os.environ.get("SYSTOLE_UIO", "systole")), irq=irq)
    opened = []
    try:
        memory = UdmabufMemory(os.environ.get("SYSTOLE_UDMABUF", "udmabuf0"))
        opened.append(memory)
        shared = None
        if config.coherent_io:
            shared = UdmabufMemory(os.environ.get("SYSTOLE_UDMABUF_SHARED", "udmabuf1"), coherent=True)
            opened.append(shared)
        driver = Driver(registers, memory, config, use_irq=irq, shared=shared)
    except BaseException:
        for window in opened:
            window.close()
        registers.close()
        raise

    def close() -> None:
        registers.close()
        for window in opened:
            window.close()
    return DriverBackend(config, driver, "device", closer=close, platform=registers)
