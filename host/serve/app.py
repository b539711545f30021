"""The OpenAI-compatible HTTP API over a ``Runtime``: FastAPI routes, request models, errors.

Routes: ``GET /v1/models``, ``POST /v1/completions``, ``POST /v1/chat/completions``; both
POSTs stream as server-sent events with ``"stream": true`` (``data: {chunk}`` lines, then
``data: [DONE]``), in the shapes of OpenAI's API so its clients work unchanged.

Requests are validated before they queue: bad JSON, a field OpenAI's API does not have
(or this server does not implement) and an out-of-range value are a 400 whose body is
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` naming the field and the
value; an unknown model is a 404; a full queue a 429. Prompts are tokenized and checked
against the context here, so a generation that starts can finish.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import UsageError
from ..llm.chat import chat_prompt_ids
from .scheduler import QueueFull, Scheduler

__all__ = ["create_app", "ChatRequest", "CompletionRequest"]

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: bool = False


class _GenerationRequest(_Strict):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)         # an extension, as llama.cpp's server and vLLM
    n: int = Field(1, ge=1, le=1)                 # one choice per request
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value):
        stops = [value] if isinstance(value, str) else value
        if stops is not None and (len(stops) > 4 or not all(stops)):
            raise ValueError("at most 4 non-empty strings")
        return value


class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        prompts = [value] if isinstance(value, str) else value
        if len(prompts) != 1 or not prompts[0]:
            raise ValueError("one non-empty prompt per request")
        return prompts[0]


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatRequest(_GenerationRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


def error_body(message: str, param: str | None = None, code: str | None = None,
               kind: str = "invalid_request_error") -> dict:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def create_app(runtime, model_id: str, *, default_max_tokens: int = 256, max_waiting: int = 64) -> FastAPI:
    """The API serving ``runtime`` under the model name ``model_id``.

    ``default_max_tokens`` bounds a request that gives no ``max_tokens``. The app's
    ``state.scheduler`` runs the generations (one at a time, arrival order).
    """
    app = FastAPI(title="Systole", description="OpenAI-compatible API on a Systole backend")
    scheduler = Scheduler(runtime, max_waiting=max_waiting)
    app.state.scheduler = scheduler
    app.router.add_event_handler("shutdown", scheduler.close)
    created = int(time.time())
    context = runtime.model.config

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        if first.get("type") == "json_invalid":
            return JSONResponse(error_body(f"the body is not valid JSON: {first.get('msg')} "
                                           f"(at character {location[-1] if location else '?'})",
                                           code="invalid_json"), status_code=400)
        param = ".".join(location) or None
        if first.get("type") == "extra_forbidden":
            message = f"unknown field {param!r} (value {_short(first.get('input'))})"
        elif first.get("type") == "missing":
            message = f"field {param!r} is required"
        else:
            message = f"{param}={_short(first.get('input'))}: {first.get('msg')}"
        return JSONResponse(error_body(message, param, first.get("type")), status_code=400)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "systole"}]}

    @app.get("/v1/models/{name}")
    async def model(name: str):
        if name != model_id:
            return _unknown_model(name)
        return {"id": model_id, "object": "model", "created": created, "owned_by": "systole"}

    def _unknown_model(name: str) -> JSONResponse:
        return JSONResponse(error_body(f"model {name!r} does not exist; this server has {model_id!r}",
                                       "model", "model_not_found"), status_code=404)

    def _options(body: _GenerationRequest, prompt_ids: list[int], max_tokens: int | None) -> dict | JSONResponse:
        budget = max_tokens if max_tokens is not None else \
            max(1, min(default_max_tokens, context.max_seq_len - len(prompt_ids)))
        room = context.max_seq_len - len(prompt_ids)
        if room < 1:
            return JSONResponse(error_body(f"the prompt is {len(prompt_ids)} tokens; the model's "
                                           f"context holds {context.max_seq_len}", "prompt",
                                           "context_length_exceeded"), status_code=400)
        if budget > room:
            return JSONResponse(error_body(f"max_tokens={budget}: the prompt ({len(prompt_ids)} tokens) "
                                           f"plus max_tokens exceeds the context of "
                                           f"{context.max_seq_len} tokens; use max_tokens <= {room}",
                                           "max_tokens", "context_length_exceeded"), status_code=400)
        return dict(prompt=prompt_ids, max_new_tokens=budget, temperature=body.temperature,
                    top_k=body.top_k, top_p=body.top_p if body.top_p < 1.0 else None, seed=body.seed,
                    stop=body.stop)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        if body.model != model_id:
            return _unknown_model(body.model)
        prompt_ids = runtime.tokenizer.encode(body.prompt, special=False)
        options = _options(body, prompt_ids, body.max_tokens)
        if isinstance(options, JSONResponse):
            return options
        return await _respond(request, body, options, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request):
        if body.model != model_id:
            return _unknown_model(body.model)
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                    for m in body.messages]
        try:
            prompt_ids = chat_prompt_ids(runtime.tokenizer, messages)
        except UsageError as error:
            return JSONResponse(error_body(str(error), "messages"), status_code=400)
        options = _options(body, prompt_ids, body.max_completion_tokens or body.max_tokens)
        if isinstance(options, JSONResponse):
            return options
        return await _respond(request, body, options, chat=True)

    async def _respond(request: Request, body: _GenerationRequest, options: dict, chat: bool):
        try:
            job = scheduler.submit(options)
        except QueueFull as error:
            return JSONResponse(error_body(f"the server is busy: {error}", None, "queue_full",
                                           "rate_limit_error"), status_code=429)
        shape = _Shape(chat, model_id, len(options["prompt"]))
        if body.stream:
            usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(_stream(job, shape, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        pieces = []
        try:
            while True:
                getter = asyncio.ensure_future(job.events.get())
                while not getter.done():
                    await asyncio.wait({getter}, timeout=0.25)
                    if not getter.done() and await request.is_disconnected():
                        getter.cancel()
                        job.cancel()
                        return JSONResponse(error_body("client disconnected"), status_code=499)
                kind, value = getter.result()
                if kind == "text":
                    pieces.append(value)
                elif kind == "error":
                    return _server_error(value)
                else:
                    return shape.whole(value.text if value is not None else "".join(pieces), value)
        finally:
            job.cancel()          # no effect on a finished job; stops one whose client left

    async def _stream(job, shape: "_Shape", include_usage: bool):
        try:
            if shape.chat:
                yield shape.event(shape.chunk({"role": "assistant", "content": ""}, None))
            while True:
                kind, value = await job.events.get()
                if kind == "text":
                    yield shape.event(shape.chunk({"content": value} if shape.chat else value, None))
                elif kind == "error":
                    yield shape.event(_server_error_body(value))
                    return
                else:
                    if value is None:
                        return
                    reason = FINISH_REASONS.get(value.finish_reason, value.finish_reason)
                    yield shape.event(shape.chunk({} if shape.chat else "", reason))
                    if include_usage:
                        yield shape.event({**shape.chunk(None, None), "choices": [],
                                           "usage": shape.usage(value)})
                    yield "data: [DONE]\n\n"
                    return
        finally:
            job.cancel()          # the client went away mid-stream: stop generating for it

    return app


def _server_error_body(error: Exception) -> dict:
    return error_body(f"generation failed: {type(error).__name__}: {error}", None, None, "server_error")


def _server_error(error: Exception) -> JSONResponse:
    return JSONResponse(_server_error_body(error), status_code=500)


class _Shape:
    """OpenAI's response objects for one request (completion or chat)."""

    def __init__(self, chat: bool, model_id: str, prompt_tokens: int):
        self.chat, self.model_id, self.prompt_tokens = chat, model_id, prompt_tokens
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def usage(self, result) -> dict:
        completion = len(result.tokens)
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion}

    def chunk(self, delta, finish_reason) -> dict:
        if self.chat:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model_id, "choices": [choice]}
        choice = {"index": 0, "text": delta, "finish_reason": finish_reason, "logprobs": None}
        return {"id": self.id, "object": "text_completion", "created": self.created,
                "model": self.model_id, "choices": [choice]}

    @staticmethod
    def event(payload: dict) -> str:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    def whole(self, text: str, result) -> dict:
        if result is None:      # cancelled before it finished
            return JSONResponse(error_body("the request was cancelled"), status_code=499)
        reason = FINISH_REASONS.get(result.finish_reason, result.finish_reason)
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "finish_reason": reason, "logprobs": None}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "finish_reason": reason, "logprobs": None}
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model_id,
                "choices": [choice], "usage": self.usage(result)}
