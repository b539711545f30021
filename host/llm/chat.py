"""Chat: the model's own template, messages in, a session that keeps its KV cache.

``render_chat(template, messages)`` renders a GGUF's ``tokenizer.chat_template`` (Jinja) the
way Hugging Face's ``apply_chat_template`` does, in jinja2's immutable sandbox: a template
is data from a downloaded file, so it may not reach Python attributes or mutate anything.

``ChatSession(runtime)`` keeps the conversation. Each turn renders the whole history,
finds how much of it the KV cache already holds (the tokens of every earlier turn, up to
where the rendering differs from what was generated) and runs only the rest, so a turn
costs its new tokens, not the whole conversation again.
"""

from __future__ import annotations

import datetime
import json
from typing import Iterator, Sequence

from ..errors import UsageError

__all__ = ["ROLES", "ChatSession", "check_messages", "render_chat", "chat_prompt_ids"]

ROLES = ("system", "user", "assistant", "tool")


def check_messages(messages: object) -> list[dict]:
    """``messages`` as a list of ``{"role", "content"}`` dicts; ``UsageError`` names the bad one."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise UsageError(f"messages={_short(messages)} must be a non-empty list of "
                         "{'role': ..., 'content': ...} objects")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise UsageError(f"messages[{index}]={_short(message)} is not an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise UsageError(f"messages[{index}].role={_short(role)} must be one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            raise UsageError(f"messages[{index}].content={_short(content)} must be a string")
        checked.append({"role": role, "content": content})
    return checked


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _environment():
    from jinja2 import StrictUndefined  # noqa: F401  (templates test "is defined" themselves)
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise UsageError(f"the chat template refused the messages: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[loopcontrols])
    environment.filters["tojson"] = lambda value, indent=None: json.dumps(
        value, ensure_ascii=False, indent=indent)
    environment.globals["raise_exception"] = raise_exception
    environment.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return environment


_COMPILED: dict[str, object] = {}


def render_chat(template: str, messages: Sequence[dict], *, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "") -> str:
    """The prompt text ``template`` makes of ``messages`` (and the assistant's opening
    if ``add_generation_prompt``). Template errors are ``UsageError``s."""
    from jinja2 import TemplateError

    messages = check_messages(messages)
    try:
        compiled = _COMPILED.get(template)
        if compiled is None:
            compiled = _COMPILED.setdefault(template, _environment().from_string(template))
        return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt,
                               bos_token=bos_token, eos_token=eos_token)
    except TemplateError as error:
        raise UsageError(f"the model's chat template failed: {type(error).__name__}: {error}") from None


def chat_prompt_ids(tokenizer, messages: Sequence[dict]) -> list[int]:
    """Token ids of ``messages`` rendered with the tokenizer's chat template.

    As in ``apply_chat_template``, no BOS is added: templates write ``bos_token`` where
    the model wants it. Control-token texts become control tokens.
    """
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise UsageError(f"{tokenizer.source} has no chat template (tokenizer.chat_template); "
                         "use a plain prompt instead of messages")
    bos = tokenizer.piece(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
    text = render_chat(template, messages, bos_token=bos, eos_token=tokenizer.piece(tokenizer.eos_id))
    return tokenizer.encode(text, add_bos=False, special=True)


class ChatSession:
    """A conversation with one runtime; its KV cache carries over from turn to turn.

    ``send(text, **options)`` yields the reply's text as it is generated (options as for
    ``Runtime.steps``); afterwards ``last`` is its ``Generation`` and ``reused_tokens``
    how many prompt tokens the cache already held.
    """

    def __init__(self, runtime, system: str | None = None):
        self.runtime = runtime
        self.messages: list[dict] = [{"role": "system", "content": system}] if system else []
        self.cache = runtime.transformer.new_cache()
        self.cached_tokens: list[int] = []        # what the cache holds, position by position
        self.last = None
        self.reused_tokens = 0

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.messages = [m for m in self.messages if m["role"] == "system"][:1]
        self.cached_tokens = []
        self.cache.reset()

    def send(self, text: str, **options) -> Iterator[str]:
        """Add the user's ``text``, generate the reply, add it to the history."""
        messages = self.messages + [{"role": "user", "content": text}]
        prompt = chat_prompt_ids(self.runtime.tokenizer, messages)
        reuse = 0
        for cached, new in zip(self.cached_tokens, prompt):
            if cached != new:
                break
            reuse += 1
        reuse = min(reuse, len(prompt) - 1)        # at least one token runs, for its logits
        self.reused_tokens = reuse
        steps = self.runtime.steps(prompt, cache=self.cache, reuse=reuse, **options)
        self.cached_tokens = list(prompt)
        while True:
            try:
                token, piece = next(steps)
            except StopIteration as done:
                self.last = done.value
                break
            if token >= 0:
                self.cached_tokens.append(token)
            if piece:
                yield piece
        # the cache holds every generated token but the last (it was never run)
        self.cached_tokens = self.cached_tokens[:self.cache.length]
        self.messages = messages + [{"role": "assistant", "content": self.last.text}]
