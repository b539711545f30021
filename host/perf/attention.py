"""Attention on the host or on the accelerator: the A53 estimate of both (issue 16).

``python -m host.perf.attention`` prices one decode token of Gemma 3 270M with
``host.perf.a53``'s method, for attention on the host (float32 over a float32 KV
cache) and on the accelerator (``host.llm.attention``: q.K^T and p.V as jobs over an
int8 KV cache in device memory), at several contexts:

- flops, exp and bytes: ``a53.host_ops``'s inventory; for the accelerator its
  ``attention`` and ``kv cache`` entries become ``offload_ops``'s (below);
- Python-level calls, compiled calls and jobs: counted on real decode tokens of the
  fused decoder on the KV260 platform's classes (``a53.BoardRig``: the driver's compiled
  job path; offloaded, the whole token is one call, ``host.llm.fused``);
- syscalls: ``a53.syscalls_per_job`` (strace) times the jobs;
- the accelerator time of the extra jobs from the cycle model (``host.accel.cycles``),
  so the saving on the host is set against what the accelerator adds.

``offload_ops`` per layer, KV head and token (``t`` visible keys, ``S`` slots, ``g``
query heads per KV head): quantize the ``g`` query rows and the new key and value
(4 flops per element); write the key's row span of the packed layout into the host copy
(``(hd - 1) * port_bytes + 1`` bytes, read and written) and the value's ``hd`` bytes,
and both into the device's write-combining view (``_STORE_BYTES`` a store: ``hd``
stores for the key, one per beat of ``port_bytes`` for the value); per score:
dequantize (2), softmax (3) and one exp (``EXP_FLOPS``: the kernels' libm-free
``_exp``), ``p * sv`` (1), quantize (4), reading the int32 sum and both scales, writing
the int8 ``p * sv`` over all ``S`` slots; dequantize the ``g x hd`` result (2 per
element, int32 in).
"""

from __future__ import annotations

import sys
from dataclasses import replace

from hdl.spec.config import AccelConfig, preset

from ..cli import ArgumentParser, entry
from ..llm.expf import EXP_FLOPS
from ..llm.model.base import ModelConfig
from . import a53

__all__ = ["offload_ops", "attention_slots", "attention_cycles", "compare", "main"]


def attention_slots(config: ModelConfig, layer: int, context: int) -> int:
    """Slots of ``layer``'s device KV cache at ``context`` (the window's ring, else the
    context rounded up to a power of two, as ``DeviceKVCache`` grows)."""
    if not config.is_global(layer) and config.sliding_window is not None:
        return min(config.sliding_window, max(16, 1 << (context - 1).bit_length()))
    return max(16, 1 << (context - 1).bit_length())


# A store to the write-combining device view is priced as a 64-byte line of DRAM
# traffic: the key's hd bytes are each their own store (port_bytes apart, nothing to
# merge), the value's bytes merge into one store per beat (port_bytes contiguous).
_STORE_BYTES = 64


def offload_ops(config: ModelConfig, context: int, accel: AccelConfig,
                argmax_scanned: float = 1.0) -> list[a53.HostOp]:
    """``a53.host_ops`` with attention on the accelerator (module docstring)."""
    ops = [op for op in a53.host_ops(config, context, argmax_scanned=argmax_scanned)
           if op.name not in ("attention", "kv cache")]
    hd, g, kv = config.head_dim, config.n_heads // config.n_kv_heads, config.n_kv_heads
    port_bytes = accel.cols // accel.weight_ports
    attention = a53.HostOp("attention")
    cache = a53.HostOp("kv cache")
    for layer in range(config.n_layers):
        t = a53._visible_keys(config, layer, context)
        slots = attention_slots(config, layer, context)
        for _ in range(kv):
            cache += a53.HostOp("kv cache", 4 * 2 * hd, 0, 2 * ((hd - 1) * port_bytes + 1) + 2 * hd
                                + _STORE_BYTES * (hd + -(-hd // port_bytes)))
            attention += a53.HostOp("attention", 4 * g * hd + (10 + EXP_FLOPS) * g * t + 2 * g * hd, 0,
                                    g * hd + 4 * g * t + 8 * t + g * slots + 4 * g * hd)
    return ops + [attention, cache]


def attention_cycles(config: ModelConfig, context: int, accel: AccelConfig) -> int:
    """Accelerator cycles of one token's attention jobs (the cycle model)."""
    from ..accel.cycles import job_cycles

    g, hd = config.n_heads // config.n_kv_heads, config.head_dim
    total = 0
    for layer in range(config.n_layers):
        rows = a53._visible_keys(config, layer, context)
        slots = attention_slots(config, layer, context)
        tiles_rows = min(slots, -(-rows // accel.cols) * accel.cols)
        total += config.n_kv_heads * job_cycles(accel, g, tiles_rows, hd)
        for k0 in range(0, slots, accel.max_k):
            total += config.n_kv_heads * job_cycles(accel, g, hd, min(accel.max_k, slots - k0))
    return total


def compare(contexts: list[int], accel: AccelConfig, tokens: int = 4, progress=print) -> list[dict]:
    """One row per (context, attention): counts, the A53 estimate, the extra
    accelerator time."""
    from ..llm.attention import OffloadedAttention
    from ..llm.fused import FusedDecoder
    from ..llm.layers import linear_specs
    from ..llm.linear import QuantizedLinears
    from ..llm.model import load_model
    from ..llm.quant import scheme
    from ..llm.transformer import RUNTIME_KV_DTYPE, Transformer

    progress("counting syscalls per job (strace)...")
    syscalls = {False: a53.syscalls_per_job(accel, False)}
    model = load_model(None, progress=False)
    config = model.config
    progress("the classifier blocks the greedy argmax scans (golden backend)...")
    share = a53.argmax_scan_share(config, model.weights, prompts=a53.text_prompts(model.tokenizer))
    rows = []
    for mode in ("host", "accelerator"):
        rig = a53.BoardRig(accel)              # the KV260's classes, as a53's counts
        backend = rig.backend
        linears = QuantizedLinears(linear_specs(config, model.weights), backend, scheme("per-channel"))
        attention = OffloadedAttention(config, backend) if mode == "accelerator" else None
        transformer = Transformer(config, model.weights, linears, attention=attention, kv_dtype=RUNTIME_KV_DTYPE)
        decoder = FusedDecoder.build(transformer)
        for context in contexts:
            progress(f"{mode} attention, context {context}...")
            ops = (a53.host_ops(config, context, argmax_scanned=share) if mode == "host"
                   else offload_ops(config, context, accel, share))
            counts = a53.count("Gemma 3 270M", config, transformer, context, accel, syscalls, tokens,
                               decoder, ops)
            extra_cycles = attention_cycles(config, context, accel) if mode == "accelerator" else 0
            attention_only = [replace(counts, flops=o.flops, transcendentals=o.transcendentals,
                                      bytes=o.bytes, python_calls=0, syscalls=0, compiled_calls=0)
                              for o in ops if o.name in ("attention", "kv cache")]
            rows.append({"mode": mode, "context": context, "counts": counts,
                         "a53": a53.estimate(counts, a53.A53),
                         "attention_ms": sum(a53.estimate(c, a53.A53)["total"] for c in attention_only),
                         "extra_accel_ms": extra_cycles / (accel.clock_mhz * 1e3)})
        rig.close()
    return rows


def render(rows: list[dict]) -> str:
    lines = [f"{'attention':<13}{'ctx':>5}{'jobs':>6}{'compiled':>10}{'Py calls':>10}{'syscalls':>10}"
             f"{'attn+kv ms':>12}{'flops ms':>10}{'exp ms':>8}{'mem ms':>8}{'calls ms':>10}"
             f"{'A53 total':>11}{'+accel ms':>11}"]
    for row in rows:
        c, e = row["counts"], row["a53"]
        lines.append(f"{row['mode']:<13}{c.context:>5}{c.jobs:>6}{c.compiled_calls:>10}{c.python_calls:>10}"
                     f"{c.syscalls:>10}{row['attention_ms']:>12.2f}{e['flops']:>10.2f}{e['exp/tanh']:>8.2f}"
                     f"{e['memory']:>8.2f}"
                     f"{e['python calls'] + e['compiled calls'] + e['syscalls']:>10.2f}{e['total']:>11.2f}"
                     f"{row['extra_accel_ms']:>11.3f}")
    return "\n".join(lines)


@entry
def main(argv: list[str] | None = None) -> int:
    """The comparison table for Gemma 3 270M on the KV260's A53."""
    parser = ArgumentParser(prog="python -m host.perf.attention", description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", nargs="+", type=int, default=[64, 512, 2048])
    args = parser.parse_args(argv)
    rows = compare(args.contexts, preset("kv260"), progress=lambda m: print(m, file=sys.stderr))
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
