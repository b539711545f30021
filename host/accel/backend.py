"""The accelerator contract and the registry of backends by name.

The contract (``IntBackend``): weights are int8 ``[N, K]`` or 4-bit ``Int4Weights``
(``host.accel.pack``; the product uses their int8 ``q * s``), loaded once per model with
``load(name, w)`` (a hardware backend packs them with its ``cols`` and places them in
device memory); ``matmul(x, handle)`` takes int8 activations ``[M, K]`` and returns
the exact ``int32 [M, N]`` product ``x @ W.T``. Scales are the caller's business
(``host.llm.linear``). ``K`` must not exceed ``max_k``.

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
from dataclasses import dataclass
from typing import Callable

import numpy as np

from hdl.spec.config import AccelConfig, preset
from hdl.spec.formats import WeightFormat
from host.accel.pack import Int4Weights, PackedWeights, pack_int4, pack_weights
from host.errors import SystoleError

__all__ = ["IntBackend", "Backend", "BACKENDS", "BackendUnavailable", "DEFAULT_PRESET",
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

    def close(self) -> None:
        """Release device resources (nothing for software backends)."""


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
