"""The OpenAI-compatible server against the official ``openai`` client, over real HTTP.

A live uvicorn server on localhost serves a tiny random Qwen 2 (byte-level BPE, ChatML
template) on the golden backend. Every answer must be the one ``generate()`` gives for the
same request; errors must be OpenAI's error bodies naming the bad field and value.
"""

import json
import threading
import time

import httpx2 as httpx
import openai
import pytest

from host.llm.generate import generate, load
from host.llm.model import load_model
from host.serve import create_app
from host.serve.live import LiveServer

from host_testmodels import write_chat_model

MODEL = "tiny-qwen2"
MESSAGES = [{"role": "user", "content": "Hello! 日本語 🤖"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    path = write_chat_model(tmp_path_factory.mktemp("serve") / "chat.gguf", seed=5)
    runtime = load(load_model(path, cache_dir=path.parent / "cache", progress=False), backend="golden",
                   progress=False)
    app = create_app(runtime, MODEL, default_max_tokens=16)
    with LiveServer(app) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)
        yield runtime, app, server, client


def test_models_and_completions_match_generate(served):
    runtime, _, _, client = served
    assert [m.id for m in client.models.list().data] == [MODEL]
    reply = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10,
                                      temperature=0)
    expected = generate(runtime, runtime.tokenizer.encode("Once upon a time", special=False),
                        max_new_tokens=10)
    assert reply.choices[0].text == expected.text
    assert reply.usage.completion_tokens == len(expected.tokens)
    assert reply.usage.prompt_tokens == len(expected.prompt_tokens)
    assert reply.choices[0].finish_reason == ("length" if expected.finish_reason == "length" else "stop")


def test_chat_completion_and_its_stream_match_generate(served):
    runtime, _, _, client = served
    expected = generate(runtime, messages=MESSAGES, max_new_tokens=12, eos_token_id=[])
    # a stop token would end it early on a random model: stop strings do the ending here
    reply = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=0)
    plain = generate(runtime, messages=MESSAGES, max_new_tokens=12)
    assert reply.choices[0].message.content == plain.text
    assert reply.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=12, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.text
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert reasons == ["length" if plain.finish_reason == "length" else "stop"]
    assert chunks[-1].usage.completion_tokens == len(plain.tokens)
    stop = expected.text[2:5]
    if stop:
        cut = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=12,
                                        temperature=0, stop=[stop], stream=True)
        streamed = "".join(c.choices[0].text for c in cut)
        assert stop not in streamed


@pytest.mark.parametrize("options,param,value", [
    ({"temperature": 5}, "temperature", "5"), ({"top_p": 0}, "top_p", "0"),
    ({"max_tokens": 0}, "max_tokens", "0"), ({"n": 3}, "n", "3"),
    ({"max_tokens": 100000}, "max_tokens", "100000"), ({"seed": -1}, "seed", "-1"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "")])
def test_out_of_range_values_are_named(served, options, param, value):
    *_, client = served
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, **options)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param
    assert param in error["message"] and value in error["message"]


def test_unknown_fields_bad_json_and_unknown_models(served):
    _, _, server, client = served
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"bogus_option": 7})
    assert caught.value.body["param"] == "bogus_option" and "7" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "wizard", "content": "x"}])
    assert caught.value.body["param"] == "messages.0.role" and "wizard" in caught.value.body["message"]
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="gpt-9", prompt="x")
    assert "gpt-9" in caught.value.body["message"]
    raw = httpx.post(server.base_url + "/chat/completions", content=b'{"model": "tiny-qwen2", "messages": [',
                     headers={"content-type": "application/json"})
    assert raw.status_code == 400 and raw.json()["error"]["code"] == "invalid_json"
    assert "JSON" in raw.json()["error"]["message"]


def test_a_client_that_leaves_cancels_its_generation(served, monkeypatch):
    runtime, app, server, client = served
    # 400 tokens of this small model take ~50 ms, less than noticing a hang-up can take
    # on a busy machine: pace the generation at 5 ms a token, as a real model would be.
    steps = runtime.steps

    def paced(**options):                  # Runtime.steps, its return value kept
        inner = steps(**options)
        try:
            while True:
                try:
                    item = next(inner)
                except StopIteration as end:
                    return end.value
                time.sleep(0.005)
                yield item
        finally:
            inner.close()
    monkeypatch.setattr(runtime, "steps", paced)
    stats = app.state.scheduler.stats
    before = dict(stats)
    with httpx.stream("POST", server.base_url + "/completions", timeout=60,
                      json={"model": MODEL, "prompt": "Once", "max_tokens": 400, "temperature": 0,
                            "stream": True, "stop": None}) as response:
        lines = response.iter_lines()
        received = [next(lines) for _ in range(4)]       # a few events, then hang up
    assert any(line.startswith("data: ") for line in received)
    # the next request is served after the cancelled one ended, well before its 400 tokens
    client.completions.create(model=MODEL, prompt="Once", max_tokens=2, temperature=0)
    assert stats["cancelled"] == before["cancelled"] + 1
    assert stats["tokens"] - before["tokens"] < 400


def test_concurrent_clients_each_get_their_own_answer(served):
    runtime, _, _, client = served
    prompts = [f"Story number {i}:" for i in range(6)]
    expected = {p: generate(runtime, runtime.tokenizer.encode(p, special=False), max_new_tokens=8).text
                for p in prompts}
    answers = {}

    def ask(prompt):
        answers[prompt] = client.completions.create(model=MODEL, prompt=prompt, max_tokens=8,
                                                    temperature=0).choices[0].text

    threads = [threading.Thread(target=ask, args=(p,)) for p in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == expected
    assert json.dumps(answers, ensure_ascii=False)        # every answer is text
