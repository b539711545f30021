"""``python -m host.serve``: an OpenAI-compatible HTTP server on any Systole backend.

FastAPI routes (``app``) over a single generation worker (``scheduler``), served by
uvicorn. ``python -m host.serve.bench`` measures its overhead per token and its behaviour
under load.
"""

from .app import ChatRequest, CompletionRequest, create_app
from .scheduler import Job, QueueFull, Scheduler

__all__ = ["ChatRequest", "CompletionRequest", "Job", "QueueFull", "Scheduler", "create_app", "serve"]


def serve(runtime, model_id: str, host: str = "127.0.0.1", port: int = 8000, **options) -> None:
    """Serve ``runtime`` until interrupted (uvicorn, one process, one event loop)."""
    import uvicorn

    uvicorn.run(create_app(runtime, model_id, **options), host=host, port=port, log_level="warning")
