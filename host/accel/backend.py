"""The accelerator contract and the registry of backends by name.

The contract (``IntBackend``): weights are int8 ``[N, K]`` or 4-bit ``Int4Weights``
(``host.accel.pack``; the product uses their int8 ``q * s``), loaded once per model with
``load(name, w)`` (a hardware backend packs them with its ``cols`` and places them in
device memory); ``matmul(x, handle)`` takes int8 activations ``[M, K]`` and returns
the exact ``int32 [M, N]`` product ``x @ W.T``. Scales are the caller's business
(``host.llm.linear``). ``K`` must not exceed ``max_k``.

Mutable weights (an int8 KV cache the accelerator streams): ``load_mutable(name, n, k)``
places an all-zero int8 ``[n, k]`` matrix in the packed layout and returns a
``MutableWeights`` handle; ``write_rows`` / ``write_columns`` overwrite rows (output
channels) or columns (K steps) in place, in the host's copy and in the backend's (on
hardware: the touched bytes of device memory, synced for the device);
``matmul_rows(x, handle, n)`` is the exact ``int32 [M, n]`` product with the first ``n``
rows. The whole matrix stays one packed layout of capacity ``n``, so a job over fewer
rows reads a prefix of each port's stream with the capacity's ``W_STRIDE``.

``BACKENDS`` names every backend and where its factory lives; ``make_backend``
imports that module only when the backend is made, so choosing the golden backend
never loads a simulator or a board's driver, and a backend whose module fails to
import says so (``BackendUnavailable``, with the import error chained) instead of
passing for an unknown name:

- ``golden``, ``float``: on the CPU (``host.accel.software``);
- ``sim``, ``device``, ``link``: the one register-level driver on a platform
  (``host.platforms``).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from hdl.spec.config import AccelConfig, preset
from hdl.spec.formats import WeightFormat
from host.accel import pack as packing
from host.accel.pack import Int4Weights, PackedWeights, pack_int4, pack_weights, unpack_weights
from host.errors import SystoleError

__all__ = ["IntBackend", "MutableWeights", "Backend", "BACKENDS", "BackendUnavailable", "DEFAULT_PRESET",
           "make_backend", "register_backend"]

DEFAULT_PRESET = "kv260"


class IntBackend(ABC):
    """The accelerator contract: int8 x packed int8 -> exact int32.

    Subclasses set ``name`` and ``config`` (``AccelConfig``: ``cols``, ``rows``,
    ``max_k``). ``last_cycles()`` reports accelerator cycles of the latest matmul
    when the backend can measure them (hardware), else ``None``.
    """

    name = "int8"

    def __init__(self, config: AccelConfig):
        self.config = config

    @property
    def cols(self) -> int:
        """Output channels per tile: the packing width."""
        return self.config.cols

    @property
    def ports(self) -> int:
        """Weight streams the packing splits a tile over (``config.weight_ports``)."""
        return self.config.weight_ports

    @property
    def max_k(self) -> int:
        """Largest K one matmul may use."""
        return self.config.max_k

    def check_weights(self, name: str, w):
        """``w`` as int8 ``[N, K]`` (or ``Int4Weights`` the configuration runs) with
        ``K <= max_k``, else a TypeError/ValueError naming ``name``."""
        if isinstance(w, Int4Weights):
            if WeightFormat.INT4 not in self.config.weight_formats:
                raise ValueError(f"{name}: {self.config.name} does not run int4 weights "
                                 f"(CAP_FORMATS {self.config.format_mask:#x}); choose an int8 scheme")
            if not 1 <= w.shape[1] <= self.max_k:
                raise ValueError(f"{name}: K={w.shape[1]} outside 1..{self.max_k} (max_k of "
                                 f"{self.config.name}); split K before loading")
            return w
        w = np.asarray(w)
        if w.dtype != np.int8 or w.ndim != 2:
            raise TypeError(f"{name}: weights must be int8 [N, K], got {w.dtype} {w.shape}")
        if not 1 <= w.shape[1] <= self.max_k:
            raise ValueError(f"{name}: K={w.shape[1]} outside 1..{self.max_k} (max_k of "
                             f"{self.config.name}); split K before loading")
        return w

    @staticmethod
    def check_activations(x: np.ndarray, k: int) -> np.ndarray:
        """``x`` as int8 ``[M, K]`` matching the weights' K, else TypeError/ValueError."""
        if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
            raise TypeError(f"activations must be int8 [M, K], got "
                            f"{getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
        if x.shape[1] != k:
            raise ValueError(f"activations have K={x.shape[1]}, weights have K={k}")
        return x

    def pack(self, name: str, w) -> PackedWeights:
        """``w`` checked and packed as the hardware streams it, in its format."""
        w = self.check_weights(name, w)
        if isinstance(w, Int4Weights):
            return pack_int4(w, self.cols, self.ports)
        return pack_weights(w, self.cols, self.ports)

    @abstractmethod
    def load(self, name: str, w):
        """Place int8 ``[N, K]`` weights (or ``Int4Weights``) for later matmuls; returns
        an opaque handle."""

    @abstractmethod
    def matmul(self, x: np.ndarray, handle) -> np.ndarray:
        """Exact ``int32 [M, N] = x (int8 [M, K]) @ W.T``."""

    def last_cycles(self) -> int | None:
        return None

    def compiled_job(self, handle, a: np.ndarray, c: np.ndarray):
        """``matmul(a, handle)`` into ``c`` as a job compiled code submits itself
        (``host.accel.driver.CompiledJob``), or None: this backend has no compiled job
        path (a driver on mapped registers with ``firmware/replay.c``, or on a UDP link
        with ``firmware/udp_bulk.c``, has one)."""
        return None

    def mapped_memory(self) -> bool:
        """Whether compiled code reaches the device memory directly (a mapped window, the
        KV260's): a job is then a few register accesses, not a round trip."""
        return False

    def compiled_epoch(self):
        """While this value stays the same, the ``compiled_job``s made under it hold;
        None: no compiled job path (now)."""
        return None

    def close(self) -> None:
        """Release device resources (nothing for software backends)."""

    # -- mutable weights --------------------------------------------------------------
    def load_mutable(self, name: str, n: int, k: int) -> MutableWeights:
        """An all-zero int8 ``[n, k]`` matrix placed for matmuls and later in-place writes
        (``n`` is the capacity in rows; ``k <= max_k``)."""
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"{name}: n={n!r} rows must be an integer >= 1")
        if not (isinstance(k, (int, np.integer)) and 1 <= k <= self.max_k):
            raise ValueError(f"{name}: K={k!r} outside 1..{self.max_k} (max_k of {self.config.name})")
        handle = MutableWeights(name, pack_weights(np.zeros((int(n), int(k)), np.int8), self.cols,
                                                   self.ports))
        handle.device = self._place_mutable(handle)
        return handle

    def write_rows(self, handle: MutableWeights, start: int, rows: np.ndarray) -> None:
        """Overwrite rows ``start..start+R-1`` with int8 ``rows [R, K]``."""
        spans = packing.write_rows(handle.packed, start, rows)
        self._mutated(handle, spans, rows=(start, rows))

    def write_columns(self, handle: MutableWeights, start: int, columns: np.ndarray) -> None:
        """Overwrite columns ``start..start+C-1`` of every row with int8 ``columns [n, C]``."""
        spans = packing.write_columns(handle.packed, start, columns)
        self._mutated(handle, spans, columns=(start, columns))

    def read_mutable(self, handle: MutableWeights) -> np.ndarray:
        """The int8 ``[n, k]`` matrix as it stands (from the host's packed copy)."""
        return unpack_weights(handle.packed)

    def release_mutable(self, handle: MutableWeights) -> None:
        """Free what ``load_mutable`` placed (the handle must not be used again)."""

    def matmul_rows(self, x: np.ndarray, handle: MutableWeights, n: int) -> np.ndarray:
        """Exact ``int32 [M, n] = x (int8 [M, K]) @ W[:n].T`` for mutable weights."""
        raise NotImplementedError(f"{self.name} has no mutable weights")

    def mutable_places(self, handle: MutableWeights):
        """Where compiled code may write ``handle`` in place (``DriverBackend``), or None:
        only ``write_rows``/``write_columns`` can."""
        return None

    def _check_rows(self, x: np.ndarray, handle: MutableWeights, n: int) -> np.ndarray:
        if not (isinstance(n, (int, np.integer)) and 1 <= n <= handle.n):
            raise ValueError(f"{handle.name}: n={n!r} rows outside 1..{handle.n} (its capacity)")
        return self.check_activations(x, handle.k)

    def _place_mutable(self, handle: MutableWeights):
        """The backend's state for a new mutable matrix (all zero)."""
        return None

    def _mutated(self, handle: MutableWeights, spans, rows=None, columns=None) -> None:
        """Bring the backend's copy up to date: ``spans`` are the touched ``(port,
        offset, nbytes)`` of the packed streams; ``rows``/``columns`` what was written."""


@dataclass
class MutableWeights:
    """A weight matrix the caller changes in place (``IntBackend.load_mutable``).

    ``packed`` is the host's copy of the packed bytes (the layout of ``host.accel.pack``
    for ``n`` rows, the capacity); ``device`` is the backend's own state (a compute
    copy, a device buffer); ``views`` caches the backend's per-row-count handles.
    """

    name: str
    packed: PackedWeights
    device: object = None
    views: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Rows (output channels): the capacity."""
        return self.packed.n

    @property
    def k(self) -> int:
        return self.packed.k


@dataclass(frozen=True)
class Backend:
    """A registered backend: ``factory`` is ``"module:attribute"`` or a callable taking
    ``(config, **options)``; ``software`` backends take a ``threads`` option."""

    name: str
    factory: str | Callable
    summary: str
    software: bool = False

    def resolve(self) -> Callable:
        """The factory, importing its module now."""
        if callable(self.factory):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise BackendUnavailable(f"backend {self.name!r} needs {module_name}, which did not "
                                     f"import: {error}") from error
        return getattr(module, attribute)


class BackendUnavailable(SystoleError, RuntimeError):
    """A backend's module could not be imported (a missing package, a broken install)."""


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("golden", "host.accel.software:GoldenBackend",
            "the exact int8 model on the CPU (what the accelerator computes)", software=True),
    Backend("float", "host.accel.software:float_backend",
            "the float32 reference, no quantization", software=True),
    Backend("sim", "host.platforms.sim:backend", "the generated RTL in Verilator"),
    Backend("device", "host.platforms.kv260:backend", "a KV260 running the Systole overlay"),
    Backend("link", "host.platforms.nexys_video:backend", "a Nexys Video over its serial link"),
)}


def register_backend(name: str, factory: str | Callable, summary: str = "",
                     software: bool = False) -> None:
    """Add (or replace) backend ``name``: ``make_backend(name, config)`` then builds
    ``factory(config, **options)``."""
    BACKENDS[name] = Backend(name, factory, summary or name, software)


def make_backend(name: str, config: AccelConfig | str | None = None, **options):
    """The backend called ``name`` for accelerator ``config`` (a preset name or object).

    ``options`` go to the backend's factory (``threads`` for the software ones).
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    if config is None:
        config = DEFAULT_PRESET
    if isinstance(config, str):
        config = preset(config)
    return BACKENDS[name].resolve()(config, **options)
