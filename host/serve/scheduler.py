"""One generation at a time, in arrival order, on a worker thread; cancellable per job.

The HTTP handlers run on uvicorn's event loop and must never block it, while a
generation is CPU-bound numpy (or a board waiting on its DMA). So a single worker thread
runs the jobs one after the other, first come first served (``queue.Queue`` is FIFO, so
no client can overtake another), and sends each text increment back to the job's
``asyncio.Queue`` with ``call_soon_threadsafe``. ``Job.cancel()`` (a client that went
away) is seen by the worker before the next token: the job ends with finish reason
"cancelled" and the next one starts.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass, field

from ..errors import UsageError

__all__ = ["Job", "QueueFull", "Scheduler"]


class QueueFull(Exception):
    """More jobs are waiting than the scheduler accepts."""


@dataclass
class Job:
    """One generation: ``options`` for ``Runtime.steps``; events arrive on ``events`` as
    ``("text", str)``, then ``("done", Generation)`` or ``("error", Exception)``."""

    options: dict
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self.cancelled.set()

    def _send(self, kind: str, value) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


class Scheduler:
    """Runs ``Job``s on ``runtime`` one at a time, in submission order.

    ``stats`` counts finished, cancelled and failed jobs and generated tokens (read by
    tests and the load benchmark).
    """

    def __init__(self, runtime, max_waiting: int = 64):
        self.runtime = runtime
        self.max_waiting = max_waiting
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self.stats = {"finished": 0, "cancelled": 0, "failed": 0, "tokens": 0}
        self.on_text = None       # called as each text increment leaves the worker (benchmarks)
        self._worker = threading.Thread(target=self._run, name="systole-generation", daemon=True)
        self._worker.start()

    def submit(self, options: dict) -> Job:
        """Queue a generation; ``QueueFull`` if ``max_waiting`` jobs are already waiting."""
        if self._jobs.qsize() >= self.max_waiting:
            raise QueueFull(f"{self._jobs.qsize()} requests are waiting (at most {self.max_waiting})")
        job = Job(options, asyncio.get_running_loop())
        self._jobs.put(job)
        return job

    def close(self) -> None:
        """Stop the worker after the job it is running."""
        self._jobs.put(None)
        self._worker.join(timeout=60)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            if job.cancelled.is_set():
                self.stats["cancelled"] += 1
                job._send("done", None)
                continue
            try:
                self._generate(job)
            except Exception as error:      # reported to the job's client, the worker goes on
                self.stats["failed"] += 1
                job._send("error", error)

    def _generate(self, job: Job) -> None:
        steps = self.runtime.steps(**job.options)
        produced = 0
        while True:
            if job.cancelled.is_set():
                steps.close()
                self.stats["cancelled"] += 1
                self.stats["tokens"] += produced
                job._send("done", None)
                return
            try:
                token, piece = next(steps)
            except StopIteration as done:
                self.stats["finished"] += 1
                self.stats["tokens"] += produced
                job._send("done", done.value)
                return
            except UsageError:
                raise
            produced += token >= 0
            if piece:
                if self.on_text is not None:
                    self.on_text()
                job._send("text", piece)
