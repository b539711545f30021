"""``python -m host.serve.bench``: what the server costs per token, and how it holds under load.

Overhead: the same greedy generation (same prompt, same number of tokens) timed with
``generate()`` in process and streamed through the live server with the ``openai``
client, interleaved ``--repeats`` times; the figure is the difference of the medians,
per token, in wall time and in the process's CPU time (which other processes on a shared
machine do not disturb; it counts the client's work too, so it bounds the server's from
above). A third figure is the delivery latency: from the worker producing a text
increment to the client holding it.

Load: ``--sequential`` requests one after the other, then ``--clients`` threads sending
``--per-client`` requests each at once, every request bounded (``max_tokens``, a client
timeout). Each client has its own prompt and must get exactly the answer ``generate()``
gives for it; the server process's resident memory is sampled before and after.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time

from ..cli import ArgumentParser, entry, int_in

__all__ = ["main", "resident_mb"]


def resident_mb() -> float:
    """This process's resident set size in MB (``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _stream_once(client, model_id: str, prompt: str, tokens: int, received: list[float]) -> tuple[float, str]:
    start = time.perf_counter()
    text = []
    stream = client.completions.create(model=model_id, prompt=prompt, max_tokens=tokens, temperature=0,
                                       stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            received.append(time.perf_counter())
            text.append(chunk.choices[0].text)
    return time.perf_counter() - start, "".join(text)


def _thread_cpu(thread) -> float:
    """CPU seconds ``thread`` has used so far (Linux per-thread clock)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def overhead(runtime, app, server, client, model_id: str, prompt: str, tokens: int, repeats: int,
             log) -> dict:
    """Median wall per token of ``generate()`` and of the server's stream; their difference.

    Also per thread CPU time: the server's own cost is the event loop thread's time plus
    what the generation thread spends beyond ``generate()`` in the caller's thread (the
    backend's kernel threads do the same work either way); the client's parsing is
    counted apart.
    """
    from ..llm.generate import generate

    ids = runtime.tokenizer.encode(prompt, special=False)
    emitted: list[float] = []
    scheduler = app.state.scheduler
    scheduler.on_text = lambda: emitted.append(time.perf_counter())
    direct, served, latencies, direct_cpu, served_cpu = [], [], [], [], []
    server_cpu, client_cpu = [], []
    for repeat in range(repeats + 1):                 # the first round warms both paths up
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        result = generate(runtime, ids, max_new_tokens=tokens)
        direct_s, direct_c = time.perf_counter() - t0, time.process_time() - c0
        direct_thread = time.thread_time() - m0
        emitted.clear()
        received: list[float] = []
        c0, m0 = time.process_time(), time.thread_time()
        loop0, worker0 = _thread_cpu(server.thread), _thread_cpu(scheduler._worker)
        served_s, text = _stream_once(client, model_id, prompt, tokens, received)
        served_c = time.process_time() - c0
        client_c = time.thread_time() - m0
        server_c = (_thread_cpu(server.thread) - loop0) + (_thread_cpu(scheduler._worker) - worker0
                                                            - direct_thread)
        if text != result.text:
            raise AssertionError(f"the server's text differs from generate()'s: {text!r} vs {result.text!r}")
        if repeat:
            direct.append(direct_s / len(result.tokens))
            served.append(served_s / len(result.tokens))
            direct_cpu.append(direct_c / len(result.tokens))
            served_cpu.append(served_c / len(result.tokens))
            server_cpu.append(server_c / len(result.tokens))
            client_cpu.append(client_c / len(result.tokens))
            latencies += [r - e for e, r in zip(emitted, received)]
        log(f"  round {repeat}: generate {direct_s * 1e3 / len(result.tokens):.2f} ms/token, "
            f"server {served_s * 1e3 / len(result.tokens):.2f} ms/token ({len(result.tokens)} tokens)")
    app.state.scheduler.on_text = None
    return {"tokens": len(result.tokens), "direct_ms": statistics.median(direct) * 1e3,
            "served_ms": statistics.median(served) * 1e3,
            "overhead_ms": (statistics.median(served) - statistics.median(direct)) * 1e3,
            "cpu_overhead_ms": (statistics.median(served_cpu) - statistics.median(direct_cpu)) * 1e3,
            "server_cpu_ms": statistics.median(server_cpu) * 1e3,
            "client_cpu_ms": statistics.median(client_cpu) * 1e3,
            "latency_ms": statistics.median(latencies) * 1e3 if latencies else float("nan")}


def load_test(runtime, app, client, model_id: str, sequential: int, clients: int, per_client: int,
              tokens: int, log) -> dict:
    """Sequential then concurrent chat requests; every answer checked, memory sampled."""
    from ..llm.generate import generate

    questions = [f"Client {i}: what is {i} plus {i + 3}?" for i in range(clients)]
    expected = {}
    for question in questions:
        messages = [{"role": "user", "content": question}]
        expected[question] = generate(runtime, messages=messages, max_new_tokens=tokens).text
    wrong: list[str] = []
    durations: list[float] = []
    lock = threading.Lock()

    def ask(question: str) -> None:
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model=model_id, max_tokens=tokens, temperature=0,
                                               messages=[{"role": "user", "content": question}])
        with lock:
            durations.append(time.perf_counter() - t0)
            if reply.choices[0].message.content != expected[question]:
                wrong.append(question)

    ask(questions[0])                                   # warm up before the first sample
    memory = [resident_mb()]
    t0 = time.perf_counter()
    for index in range(sequential):
        ask(questions[index % clients])
    sequential_s = time.perf_counter() - t0
    memory.append(resident_mb())
    log(f"  {sequential} sequential requests in {sequential_s:.1f} s, RSS {memory[-1]:.0f} MB")

    def client_loop(question: str) -> None:
        for _ in range(per_client):
            ask(question)

    threads = [threading.Thread(target=client_loop, args=(q,)) for q in questions]
    t0 = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    concurrent_s = time.perf_counter() - t0
    memory.append(resident_mb())
    log(f"  {clients} clients x {per_client} requests in {concurrent_s:.1f} s, RSS {memory[-1]:.0f} MB")
    total = 1 + sequential + clients * per_client
    stats = dict(app.state.scheduler.stats)
    return {"requests": total, "answered": len(durations), "wrong": len(wrong),
            "sequential_s": sequential_s, "concurrent_s": concurrent_s,
            "max_request_s": max(durations), "memory_mb": memory, "stats": stats}


@entry
def main(argv: list[str] | None = None) -> int:
    """The benchmark CLI: prints the overhead and load figures."""
    import openai

    from ..llm.generate import load
    from . import create_app
    from .live import LiveServer

    parser = ArgumentParser(prog="python -m host.serve.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="catalog name or GGUF path")
    parser.add_argument("--backend", default="golden")
    parser.add_argument("--tokens", type=int_in(2, 512), default=48, help="tokens per overhead run")
    parser.add_argument("--repeats", type=int_in(1, 50), default=5)
    parser.add_argument("--sequential", type=int_in(0), default=200)
    parser.add_argument("--clients", type=int_in(1, 256), default=20)
    parser.add_argument("--per-client", type=int_in(1), default=5)
    parser.add_argument("--load-tokens", type=int_in(1, 64), default=8, help="max_tokens of a load request")
    args = parser.parse_args(argv)
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    runtime = load(args.model, backend=args.backend, progress=False)
    model_id = "bench"
    app = create_app(runtime, model_id, max_waiting=max(64, args.clients * 2))
    with LiveServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=300)
        log(f"== {runtime.describe()}, served at {server.base_url}")
        log("overhead (greedy, same prompt and tokens; medians after a warm-up round):")
        cost = overhead(runtime, app, server, client, model_id, "The history of the city of Paris",
                        args.tokens, args.repeats, log)
        log("load:")
        loaded = load_test(runtime, app, client, model_id, args.sequential, args.clients,
                           args.per_client, args.load_tokens, log)
    print(f"serving overhead: generate() {cost['direct_ms']:.2f} ms/token, through the server "
          f"(SSE, openai client) {cost['served_ms']:.2f} ms/token: {cost['overhead_ms']:+.3f} ms/token "
          f"({cost['tokens']} tokens, median of {args.repeats}); CPU time of the process (server "
          f"and client threads) {cost['cpu_overhead_ms']:+.3f} ms/token, of which the server's "
          f"{cost['server_cpu_ms']:+.3f} (event loop, and the generation thread beyond generate()) "
          f"and the openai client's {cost['client_cpu_ms']:.3f}; worker -> client delivery "
          f"{cost['latency_ms']:.3f} ms (median)")
    memory = loaded["memory_mb"]
    print(f"load: {loaded['requests']} requests ({args.sequential} sequential, then {args.clients} "
          f"concurrent clients x {args.per_client}), {loaded['answered']} answered, "
          f"{loaded['wrong']} wrong or mixed up, slowest {loaded['max_request_s']:.1f} s; "
          f"sequential {args.sequential / max(loaded['sequential_s'], 1e-9):.2f} req/s, "
          f"concurrent {args.clients * args.per_client / max(loaded['concurrent_s'], 1e-9):.2f} req/s; "
          f"RSS {memory[0]:.0f} -> {memory[1]:.0f} -> {memory[2]:.0f} MB")
    runtime.close()
    return 0 if loaded["wrong"] == 0 and loaded["answered"] == loaded["requests"] else 1


if __name__ == "__main__":
    sys.exit(main())
