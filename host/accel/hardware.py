"""Hardware backends: the accelerator through the one register-level driver.

Each backend is the same ``DriverBackend`` (``host.driver.Driver`` behind the
``IntBackend`` contract) on a different platform:

- ``sim``: the generated RTL in Verilator (``host.platforms.sim``);
- ``device``: a KV260 under Linux, with UIO registers and u-dma-buf memory
  (``host.platforms.kv260``);
- ``link``: a Nexys Video over its USB-UART bridge (``host.link``).

``load`` packs the weights with the accelerator's ``cols`` and places them in
device memory once. ``matmul`` moves only activations and results. The hardware's
performance counters give ``last_cycles()``, which the profile reports per token.
"""

from __future__ import annotations

import os

import numpy as np

from hdl.config import AccelConfig

from .backends import IntBackend, register_backend
from .driver import Driver, JobStats, WeightBuffer

__all__ = ["DriverBackend", "sim_backend", "device_backend", "link_backend"]


class DriverBackend(IntBackend):
    """``IntBackend`` over a ``Driver``; ``close`` also stops the platform."""

    def __init__(self, config: AccelConfig, driver: Driver, name: str, closer=None):
        super().__init__(config)
        self.driver = driver
        self.name = name
        self._closer = closer
        self.jobs = 0
        self.total_cycles = 0

    def load(self, name: str, w: np.ndarray) -> WeightBuffer:
        return self.driver.load_matrix(self.check_weights(name, w))

    def matmul(self, x: np.ndarray, handle: WeightBuffer) -> np.ndarray:
        result = self.driver.matmul(self.check_activations(x, handle.k), handle)
        self.jobs += 1
        self.total_cycles += self.driver.last_stats.busy_cycles
        return result

    def last_cycles(self) -> int | None:
        stats = self.driver.last_stats
        return None if stats is None else stats.busy_cycles

    def last_stats(self) -> JobStats | None:
        return self.driver.last_stats

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None


def sim_backend(config: AccelConfig, memory_bytes: int = 1 << 30) -> DriverBackend:
    """The RTL in Verilator. The first use of a configuration compiles it (minutes)."""
    from .platforms.sim import CosimSession

    session = CosimSession(config, memory_bytes=memory_bytes)
    try:
        driver = Driver(session.bus, session.memory, config)
    except BaseException:
        session.close()
        raise
    backend = DriverBackend(config, driver, "sim", closer=session.close)
    backend.session = session
    return backend


def device_backend(config: AccelConfig) -> DriverBackend:
    """A KV260 running the Systole overlay (``SYSTOLE_UIO``/``SYSTOLE_UDMABUF`` override names)."""
    from .platforms.kv260 import UdmabufMemory, UioRegisters, find_uio

    registers = UioRegisters(find_uio(os.environ.get("SYSTOLE_UIO", "systole")))
    memory = UdmabufMemory(os.environ.get("SYSTOLE_UDMABUF", "udmabuf0"))

    def close():
        registers.close()

    return DriverBackend(config, Driver(registers, memory, config), "device", closer=close)


def link_backend(config: AccelConfig) -> DriverBackend:
    """A Nexys Video over its serial link (``SYSTOLE_LINK_PORT``, ``SYSTOLE_LINK_BAUD``)."""
    from .link import open_link

    bus, memory = open_link()
    return DriverBackend(config, Driver(bus, memory, config), "link")


register_backend("sim", sim_backend)
register_backend("device", device_backend)
register_backend("link", link_backend)
