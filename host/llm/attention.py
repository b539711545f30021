"""Attention products on the accelerator: an int8 KV cache in device memory (issue 16).

Per layer, per KV head and per query block, two jobs through the backend contract's
mutable weights (``host.accel.backend.IntBackend.load_mutable``):

- **q.K^T**: ``A`` = the group's query rows (``group`` heads share a KV head), int8 per
  row with scale ``sq``; ``W`` = the cached keys ``[N = positions, K = head_dim]`` int8,
  one float scale ``sk`` per key (per output channel, as a weight's scales). Appending
  a key writes one row of the packed layout in place. The job runs over the first
  ``n`` rows (the visible keys): ``scores = acc * sq * sk * attn_scale``.
- **p.V**: ``sum_t p[t] v[t, c] = sum_t (p[t] sv[t]) qv[t, c]`` with ``v[t] ~ qv[t] sv[t]``
  quantized per token, so ``A`` = ``p * sv`` int8 per row (scale ``sa``) and ``W`` =
  ``V^T [N = head_dim, K = positions]`` with unit scales: ``out = acc * sa``. Beat
  ``t`` of every tile is token ``t``, so appending a value writes one beat per tile
  and port. The tile length is ``K``: the matrix has a capacity (doubling, re-packed
  when it grows) and the job runs over all of it with ``p = 0`` past the cached
  positions. K above ``max_k`` is split into several matrices (one job each, the
  int32 sums added: one row scale covers them all).

The sliding window is a ring buffer of exactly ``window`` slots (position ``p`` in
slot ``p % window``): softmax does not care about the order of keys as long as the
probabilities and the values stay paired. A block of queries (prefill) is one pair of
jobs while no slot is reused within the block (a causal mask on the host), else one
query at a time; both give the same int32 sums as decoding token by token.

Everything the host does between the jobs (quantize, dequantize, softmax) is float32
numpy here; ``host.llm.fused`` runs it as compiled calls for decode.
"""

from __future__ import annotations

import weakref

import numpy as np

from .model.base import ModelConfig
from .transformer import check_context_length

__all__ = ["ATTENTION_MODES", "DeviceKVCache", "OffloadedAttention", "quantize_rows",
           "attention_unavailable"]

# "host": float32 attention over a float32 KV cache on the CPU (Transformer.attend);
# "accelerator": the two products as jobs over an int8 KV cache in device memory.
ATTENTION_MODES = ("host", "accelerator")

# Decode values staged on the host before their V^T columns are written (one span per
# tile and port for all of them): STAGED beats of port_bytes each.
STAGED = 16

_QMAX = np.float32(127.0)
_TINY = np.float32(np.finfo(np.float32).tiny)


def quantize_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per row: ``(q [R, C] int8, scale [R] float32)``, ``x ~ q * scale``,
    ``scale = max(max|x| / 127, tiny)`` (the fused kernels' ``_quantize``)."""
    x = np.asarray(x, np.float32)
    amax = np.abs(x).max(axis=1)
    scale = np.maximum(amax * (np.float32(1.0) / _QMAX), _TINY).astype(np.float32)
    q = np.rint(x * (np.float32(1.0) / scale)[:, None])
    np.clip(q, -_QMAX, _QMAX, out=q)
    return q.astype(np.int8), scale


def attention_unavailable(backend) -> str | None:
    """Why attention cannot run on ``backend`` (None: it can)."""
    if not callable(getattr(backend, "load_mutable", None)):
        return f"backend {getattr(backend, 'name', type(backend).__name__)!r} has no mutable weights"
    return None


class _Staged:
    """How many values the heads of one cache hold staged (``DeviceKVCache.staged``)."""

    __slots__ = ("count",)

    def __init__(self):
        self.count = 0


class _HeadCache:
    """One layer's keys and values of one KV head, in mutable weights of ``slots``
    positions: keys ``[slots, hd]`` and ``V^T`` in pieces ``[hd, <= max_k]``."""

    def __init__(self, backend, name: str, slots: int, head_dim: int, staged: _Staged | None = None):
        max_k = backend.max_k
        self.backend, self.slots, self.head_dim = backend, slots, head_dim
        self.keys = backend.load_mutable(f"{name}.keys", slots, head_dim)
        self.values = [backend.load_mutable(f"{name}.values{i}", head_dim, min(max_k, slots - k0))
                       for i, k0 in enumerate(range(0, slots, max_k))]
        self.value_starts = list(range(0, slots, max_k))
        self.key_scale = np.zeros(slots, np.float32)
        self.value_scale = np.zeros(slots, np.float32)
        self.staged_values = np.zeros((STAGED, head_dim), np.int8)
        self.staged_slots = np.zeros(STAGED, np.int64)
        self.staged_count = 0
        self._staged = _Staged() if staged is None else staged

    def write(self, slot: int, keys: np.ndarray, key_scale: np.ndarray, values: np.ndarray,
              value_scale: np.ndarray) -> None:
        """Store int8 ``keys``/``values`` ``[B, hd]`` of positions in slots ``slot..slot+B-1``.
        One value (decode) is staged on the host (``stage_value``); a block goes to the
        device at once."""
        count = keys.shape[0]
        if count == 0:
            return
        self.backend.write_rows(self.keys, slot, keys)
        self.key_scale[slot:slot + count] = key_scale
        self.value_scale[slot:slot + count] = value_scale
        if count == 1:
            self.stage_value(slot, values[0])
            return
        self.flush()
        self._write_values(slot, np.ascontiguousarray(values.T))

    def stage_value(self, slot: int, value: np.ndarray) -> None:
        """Keep one token's int8 value row on the host (its column of ``V^T`` is written
        with the next ``STAGED`` ones: one span per tile and port instead of one each);
        until then the p.V product takes its term on the host, exactly."""
        if self.staged_count == min(STAGED, self.slots):      # a ring of fewer slots repeats them
            self.flush()
        self.staged_values[self.staged_count] = value
        self.staged_slots[self.staged_count] = slot
        self.staged_count += 1
        self._staged.count += 1

    def flush(self) -> None:
        """Write the staged values to the device, in runs of consecutive slots."""
        count = self.staged_count
        if count == 0:
            return
        slots = self.staged_slots[:count]
        run = 0
        for i in range(1, count + 1):
            if i == count or slots[i] != slots[i - 1] + 1:
                self._write_values(int(slots[run]), np.ascontiguousarray(self.staged_values[run:i].T))
                run = i
        self._staged.count -= count
        self.staged_count = 0

    def _write_values(self, slot: int, columns: np.ndarray) -> None:
        """``columns [hd, B]`` into slots ``slot..slot+B-1`` of the ``V^T`` pieces."""
        count = columns.shape[1]
        for start, piece in zip(self.value_starts, self.values):
            lo, hi = max(slot, start), min(slot + count, start + piece.k)
            if lo < hi:
                self.backend.write_columns(piece, lo - start,
                                           np.ascontiguousarray(columns[:, lo - slot:hi - slot]))

    def copy_from(self, old: "_HeadCache", count: int) -> None:
        """Take over the first ``count`` slots of ``old`` (a re-pack on growth)."""
        backend = self.backend
        old.flush()
        keys = backend.read_mutable(old.keys)[:count]
        values = np.concatenate([backend.read_mutable(piece) for piece in old.values], axis=1)
        self.write(0, keys, old.key_scale[:count], np.ascontiguousarray(values[:, :count].T),
                   old.value_scale[:count])
        self.flush()

    def release(self) -> None:
        for handle in (self.keys, *self.values):
            self.backend.release_mutable(handle)

    def scores(self, q: np.ndarray, q_scale: np.ndarray, rows: int) -> np.ndarray:
        """float32 ``[R, rows]``: the q.K^T job over the first ``rows`` keys, dequantized."""
        acc = self.backend.matmul_rows(q, self.keys, rows)          # [R, rows] int32
        scores = acc.astype(np.float32)
        scores *= q_scale[:, None]
        scores *= self.key_scale[None, :rows]
        return scores

    def weighted_values(self, a: np.ndarray, a_scale: np.ndarray) -> np.ndarray:
        """float32 ``[R, hd]``: the p.V job(s) with int8 ``a [R, slots]`` (zero past the
        cached positions), the staged values' terms added on the host (exact int32),
        dequantized by the row scales."""
        staged = None
        if self.staged_count:
            slots = self.staged_slots[:self.staged_count]
            staged = a[:, slots].astype(np.int32) @ self.staged_values[:self.staged_count].astype(np.int32)
            a = a.copy()
            a[:, slots] = 0
        acc = staged
        for start, piece in zip(self.value_starts, self.values):
            part = self.backend.matmul_rows(np.ascontiguousarray(a[:, start:start + piece.k]), piece,
                                            self.head_dim)
            acc = part if acc is None else acc + part
        out = acc.astype(np.float32)
        out *= a_scale[:, None]
        return out


class DeviceKVCache:
    """Keys and values of every layer as int8 in the backend's mutable weights.

    The interface of ``host.llm.transformer.KVCache`` the transformer uses (``length``,
    ``capacity``, ``reserve``, ``reset``). Local (sliding-window) layers hold at most
    ``window`` slots, a ring once full; global layers grow without a ring. Capacity
    doubles on demand and every layer's matrices are re-packed then.
    """

    def __init__(self, config: ModelConfig, backend, capacity: int = 256):
        self.config, self.backend = config, backend
        self._length = 0
        self.written = 0          # positions ever stored since the last reset
        self.capacity = 0
        self.rings = [None if config.is_global(layer) or config.sliding_window is None
                      else config.sliding_window for layer in range(config.n_layers)]
        self.heads: list[list[_HeadCache]] = [[] for _ in range(config.n_layers)]
        self.grown = 0            # re-packs so far (tests and the profile read it)
        self._staged = _Staged()
        self._finalizer = weakref.finalize(self, DeviceKVCache._free, self.heads)
        self._grow(capacity)

    @property
    def length(self) -> int:
        """Positions cached: ``0..length-1``."""
        return self._length

    @length.setter
    def length(self, value: int) -> None:
        # Going back is fine until a ring has overwritten a slot the shorter cache needs.
        if not self.can_shorten(value):
            raise ValueError(f"cannot shorten the KV cache to {value} positions: the sliding "
                             f"window's ring already holds positions up to {self.written - 1}; "
                             "start over from 0")
        if value < self._length:         # staged values past the new end would be staged again
            self.flush()
        self._length = value
        self.written = value

    @property
    def staged(self) -> int:
        """Values staged on the host (``_HeadCache.stage_value``), not yet on the device."""
        return self._staged.count

    def slots(self, layer: int) -> int:
        """Slots of ``layer``'s matrices now."""
        return self.heads[layer][0].slots

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.capacity, 16)
        cfg = self.config
        for layer, ring in enumerate(self.rings):
            slots = capacity if ring is None else min(capacity, ring)
            old = self.heads[layer]
            if old and old[0].slots == slots:
                continue
            if slots > self.backend.config.max_mn:
                raise ValueError(f"a KV cache of {slots} positions exceeds the accelerator's N "
                                 f"limit {self.backend.config.max_mn}")
            fresh = [_HeadCache(self.backend, f"blk.{layer}.kv{kv}", slots, cfg.head_dim, self._staged)
                     for kv in range(cfg.n_kv_heads)]
            for new, previous in zip(fresh, old):
                new.copy_from(previous, min(self.length, previous.slots))
                previous.release()
            if old:
                self.grown += 1
            self.heads[layer] = fresh
        self.capacity = capacity

    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions; ValueError beyond the model's context."""
        check_context_length(self.config, length)
        if length > self.capacity:
            self._grow(length)

    def reset(self) -> None:
        self.flush()
        self._length = self.written = 0

    def flush(self) -> None:
        """Write every staged value to the device."""
        for heads in self.heads:
            for head in heads:
                head.flush()

    def release(self) -> None:
        """Free the device memory of every layer (the cache must not be used again; a
        cache that is dropped frees it when it is collected)."""
        self._finalizer()

    @staticmethod
    def _free(layers: list) -> None:
        for heads in layers:
            for head in heads:
                head.release()
            heads.clear()

    def can_shorten(self, value: int) -> bool:
        """Whether ``length = value`` keeps every slot the shorter cache needs (0 always does)."""
        window = min((ring for ring in self.rings if ring is not None), default=None)
        return value == 0 or value >= self.written or window is None or self.written <= window


class OffloadedAttention:
    """``Transformer.attend`` with both products on the backend (module docstring);
    its caches are ``DeviceKVCache``."""

    def __init__(self, config: ModelConfig, backend):
        problem = attention_unavailable(backend)
        if problem is not None:
            raise ValueError(f"attention on the accelerator needs mutable weights: {problem}")
        self.config, self.backend = config, backend

    def new_cache(self, capacity: int = 256) -> DeviceKVCache:
        return DeviceKVCache(self.config, self.backend, capacity)

    def attend(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, start: int,
               cache: DeviceKVCache) -> np.ndarray:
        """Causal softmax attention of ``q [M, H, hd]`` over the cache plus the new
        ``k``/``v [M, KV, hd]`` (appended, int8 per token): ``[M, H*hd]`` float32."""
        if not isinstance(cache, DeviceKVCache):
            raise TypeError(f"attention on the accelerator needs a DeviceKVCache, got "
                            f"{type(cache).__name__}")
        m = q.shape[0]
        out = np.empty(q.shape, np.float32)
        ring = cache.rings[layer]
        i = 0
        while i < m:
            position = start + i
            if ring is None or position + (m - i) <= ring:
                block = m - i                  # no slot is reused within the block
            elif position < ring:
                block = ring - position        # up to the first wrap
            else:
                block = 1                      # each new key replaces the oldest
            self._block(layer, q[i:i + block], k[i:i + block], v[i:i + block], position, cache,
                        out[i:i + block])
            i += block
        return out.reshape(m, -1)

    def _block(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray, position: int,
               cache: DeviceKVCache, out: np.ndarray) -> None:
        """Queries at positions ``position..position+B-1``, their keys appended first."""
        cfg = self.config
        b, hd = q.shape[0], cfg.head_dim
        group = cfg.n_heads // cfg.n_kv_heads
        ring = cache.rings[layer]
        slot = position if ring is None else position % ring
        stop = position + b
        rows = stop if ring is None else min(stop, ring)        # filled slots
        hidden = None
        if b > 1:          # slots are positions here: the causal mask (and the window)
            query_pos = np.arange(position, stop)[:, None]
            key_pos = np.arange(rows)[None, :]
            hidden = key_pos > query_pos
            if cfg.sliding_window is not None and not cfg.is_global(layer):
                hidden |= query_pos - key_pos >= cfg.sliding_window
        attn_scale = np.float32(cfg.attn_scale)
        for kv, head in enumerate(cache.heads[layer]):
            kq, ks = quantize_rows(k[:, kv])
            vq, vs = quantize_rows(v[:, kv])
            head.write(slot, kq, ks, vq, vs)
            queries = q[:, kv * group:(kv + 1) * group].reshape(b * group, hd)   # [B*group, hd]
            qq, qs = quantize_rows(queries)
            scores = head.scores(qq, qs * attn_scale, rows)                       # [B*group, rows]
            if hidden is not None:
                scores = scores.reshape(b, group, rows)
                scores[np.broadcast_to(hidden[:, None, :], scores.shape)] = -np.inf
                scores = scores.reshape(b * group, rows)
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            weighted = np.zeros((b * group, head.slots), np.float32)
            np.multiply(scores, head.value_scale[None, :rows], out=weighted[:, :rows])
            aq, a_scale = quantize_rows(weighted)
            attended = head.weighted_values(aq, a_scale)                          # [B*group, hd]
            out[:, kv * group:(kv + 1) * group] = attended.reshape(b, group, hd)
