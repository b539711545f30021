"""What the register-level driver needs from a platform: the ``Bus`` seam.

``host.accel.driver.Driver`` runs the accelerator through two small interfaces. Each
platform implements them: the simulator (cocotb + Verilator), the KV260 under
Linux (UIO registers + u-dma-buf memory) and the Nexys Video (a serial link to a
UART-to-AXI bridge). The driver code above this seam is identical on all three.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["RegisterBus", "DeviceMemory", "MemoryWindow"]


@runtime_checkable
class RegisterBus(Protocol):
    """32-bit access to the accelerator's ``s_axi_ctrl`` registers."""

    has_irq: bool   # False: the driver polls CTRL.ap_done instead of waiting for irq

    def read32(self, offset: int) -> int:
        """Read the register at byte ``offset``; returns 0..2^32-1."""

    def write32(self, offset: int, value: int) -> None:
        """Write ``value`` (0..2^32-1) to the register at byte ``offset``."""

    def wait_irq(self, timeout_s: float) -> bool:
        """Block until the interrupt line is raised or ``timeout_s`` passes.

        Returns True if the interrupt was seen. Only called when ``has_irq``.
        """

    def now(self) -> float:
        """Seconds on the device's clock: wall time on a board, simulated time in a
        simulator. Every timeout the driver applies is measured with it."""


@runtime_checkable
class DeviceMemory(Protocol):
    """A window of memory the accelerator's DMA can reach.

    ``device_address`` is the address the accelerator uses for byte 0 of the window
    (a physical address on the board). Offsets are bytes from the window start.
    """

    device_address: int
    size: int

    def write(self, offset: int, data: np.ndarray | bytes) -> None:
        """Copy ``data`` into the window at ``offset`` (visible to the device after
        ``sync_for_device``)."""

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        """A uint8 copy of ``nbytes`` at ``offset`` (call ``sync_for_cpu`` first)."""

    def sync_for_device(self, offset: int, nbytes: int) -> None:
        """Make CPU writes in the range visible to the device (cache flush)."""

    def sync_for_cpu(self, offset: int, nbytes: int) -> None:
        """Make device writes in the range visible to the CPU (cache invalidate)."""

    def direct_view(self) -> np.ndarray | None:
        """A uint8 array over the whole window in which CPU stores reach the device
        without a sync (coherent memory, or a write-combining mapping of it), for data
        the CPU writes and never reads back; None: the platform has none."""


class MemoryWindow:
    """``DeviceMemory`` over any writable buffer (an mmap, a bytearray, an array).

    The sync calls only check the range: right for memory the device shares
    coherently (the simulator). Platforms with caches subclass it and override them.
    """

    def __init__(self, buffer, device_address: int):
        self._bytes = np.frombuffer(buffer, dtype=np.uint8)
        self.device_address = device_address
        self.size = self._bytes.size

    def _check(self, offset: int, nbytes: int) -> None:
        if offset < 0 or nbytes < 0 or offset + nbytes > self.size:
            raise ValueError(
                f"range [{offset:#x}, {offset + nbytes:#x}) is outside the window of {self.size:#x} bytes")

    def write(self, offset: int, data) -> None:
        if isinstance(data, np.ndarray):
            src = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        else:
            src = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        self._check(offset, src.size)
        self._bytes[offset:offset + src.size] = src

    def read(self, offset: int, nbytes: int) -> np.ndarray:
        self._check(offset, nbytes)
        return self._bytes[offset:offset + nbytes].copy()

    def sync_for_device(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)

    def sync_for_cpu(self, offset: int, nbytes: int) -> None:
        self._check(offset, nbytes)

    def direct_view(self) -> np.ndarray:
        """The window itself: it is coherent (``DeviceMemory.direct_view``)."""
        return self._bytes

    def io_spec(self) -> tuple[int, tuple[int, ...] | None, bool, int]:
        """For a compiled job path (a bus with ``job``): the window's host address, the
        cache-maintenance files (None: coherent, nothing to sync), whether they must
        read back, and the address of the files' held values (0: none)."""
        return self._bytes.ctypes.data, None, False, 0
