"""Golden decode with 4-bit weights against int8, side by side in one run.

``python -m host.accel.bench_int4`` loads one decode token's linear layers of Gemma 3
270M (18 blocks of qkv, attn_output, ffn_up_gate, ffn_down, and the 262k x 640
classifier; random weights of the real shapes) on the golden backend three ways: all
int8, all int4, and the mixed W4A8 layout (blocks int4, classifier int8). It then times
one-token passes over every layer, interleaving the three so that a busy machine slows
them alike, and prints each one's min, median and max over the repeats and the
speedups of the medians and of the mins. Weights stream from DRAM as in real decode
(the layers total 100-270 MB).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from ..cli import ArgumentParser, entry
from .pack import Int4Weights

GEMMA_270M_LAYERS = [("qkv", 1536, 640), ("attn_out", 640, 1024), ("ffn_up_gate", 4096, 640),
                     ("ffn_down", 640, 2048)] * 18 + [("classifier", 262144, 640)]


def _weights(rng, n: int, k: int, int4: bool):
    if int4:
        return Int4Weights(rng.integers(-8, 8, (n, k), dtype=np.int8),
                           rng.integers(0, 16, (n, -(-k // 32)), dtype=np.uint8))
    return rng.integers(-127, 128, (n, k), dtype=np.int8)


def layouts() -> dict[str, callable]:
    """Name -> whether a layer kind is int4 in that layout."""
    return {"int8": lambda kind: False,
            "w4 mixed (classifier int8)": lambda kind: kind != "classifier",
            "w4 all": lambda kind: True}


@entry
def main(argv: list[str] | None = None) -> int:
    """Print per-layout decode-token times (ms, min..max over repeats) and speedups."""
    from .backend import make_backend

    parser = ArgumentParser(prog="python -m host.accel.bench_int4", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed tokens per layout")
    parser.add_argument("--threads", type=int, default=None, help="golden backend threads")
    args = parser.parse_args(argv)
    backend = make_backend("golden", "kv260", threads=args.threads)
    rng = np.random.default_rng(0)
    loaded = {}
    for name, is_int4 in layouts().items():
        handles, nbytes = [], 0
        for i, (kind, n, k) in enumerate(GEMMA_270M_LAYERS):
            handle = backend.load(f"{kind}.{i}", _weights(rng, n, k, is_int4(kind)))
            handles.append(handle)
            nbytes += handle.packed.nbytes
        loaded[name] = (handles, nbytes)
    x = {k: rng.integers(-127, 128, (1, k), dtype=np.int8) for k in (640, 1024, 2048)}
    times = {name: [] for name in loaded}
    for repeat in range(args.repeats + 1):
        for name, (handles, _) in loaded.items():
            t0 = time.perf_counter()
            for handle in handles:
                backend.matmul(x[handle.k], handle)
            if repeat:                                   # the first pass warms up
                times[name].append(time.perf_counter() - t0)
    print(f"golden decode, one token over Gemma 3 270M's linear layers, {backend.threads} "
          f"threads, {args.repeats} repeats (ms: min, median, max; speedups of the medians "
          f"and of the mins)")
    base = times["int8"]
    for name, (_, nbytes) in loaded.items():
        t = times[name]
        print(f"  {name:<28}{nbytes / 1e6:>5.0f} MB  min {1e3 * min(t):6.1f}  median "
              f"{1e3 * statistics.median(t):6.1f}  max {1e3 * max(t):6.1f}  "
              f"{1 / statistics.median(t):5.1f} tok/s  x{statistics.median(base) / statistics.median(t):.2f} "
              f"(mins x{min(base) / min(t):.2f}) vs int8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
