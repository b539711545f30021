"""Chat templates, messages, the KV-cache-keeping session, stop strings and ``--chat``.

The reference for rendering is transformers' ``apply_chat_template`` on its own
tokenizer of the same GGUF file; the session is checked against generating each turn
from scratch.
"""

import pytest

from host.errors import UsageError
from host.llm.chat import ChatSession, chat_prompt_ids, render_chat
from host.llm.generate import generate, load, main
from host.llm.model import load_model

from host_testmodels import CHATML_TEMPLATE, write_chat_model

CONVERSATION = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Hello! 日本語 🤖 <b>ok</b>"},
                {"role": "assistant", "content": "Hi there."},
                {"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    path = write_chat_model(tmp_path_factory.mktemp("chat") / "chat.gguf")
    return path, load_model(path, cache_dir=path.parent / "cache", progress=False)


@pytest.fixture(scope="module")
def runtime(chat_model):
    return load(chat_model[1], backend="golden", progress=False)


def test_rendering_matches_transformers_apply_chat_template(chat_model):
    from transformers import PreTrainedTokenizerFast

    from test_host_bpe import reference_tokenizer

    path, model = chat_model
    reference = PreTrainedTokenizerFast(tokenizer_object=reference_tokenizer(path),
                                        chat_template=CHATML_TEMPLATE)
    for messages in (CONVERSATION, CONVERSATION[1:2]):
        for add in (True, False):
            expected = reference.apply_chat_template(messages, add_generation_prompt=add, tokenize=False)
            assert render_chat(model.tokenizer.chat_template, messages, add_generation_prompt=add) == expected
        ids = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        assert chat_prompt_ids(model.tokenizer, messages) == list(ids)
    im_start = model.tokenizer.token_id("<|im_start|>")
    assert chat_prompt_ids(model.tokenizer, CONVERSATION).count(im_start) == 5   # 4 turns + the reply
    assert model.tokenizer.token_id("<|im_end|>") in model.tokenizer.stop_ids   # the EOT id


def test_the_sandbox_refuses_unsafe_templates():
    messages = [{"role": "user", "content": "hi"}]
    for template in ("{{ messages.__class__.__mro__ }}", "{{ ''.__class__.__subclasses__() }}",
                     "{% set _ = messages.append({'role': 'x'}) %}{{ messages }}",
                     "{{ raise_exception('no system role') }}", "{% for %}"):
        with pytest.raises(UsageError, match="chat template"):
            render_chat(template, messages)


@pytest.mark.parametrize("messages,match", [
    ([], "non-empty list"), ("hi", "non-empty list"), ([{"role": "user"}], r"messages\[0\].content=None"),
    ([{"role": "wizard", "content": "x"}], r"messages\[0\].role='wizard'"), (["x"], r"messages\[0\]='x'")])
def test_bad_messages_are_named(runtime, messages, match):
    with pytest.raises(UsageError, match=match):
        generate(runtime, messages=messages)


def test_generate_with_messages_is_generate_on_the_rendered_prompt(runtime, chat_model):
    _, model = chat_model
    by_messages = generate(runtime, messages=CONVERSATION, max_new_tokens=12)
    by_ids = generate(runtime, chat_prompt_ids(model.tokenizer, CONVERSATION), max_new_tokens=12)
    assert by_messages.tokens == by_ids.tokens and by_messages.text == by_ids.text
    with pytest.raises(UsageError, match="either a prompt or messages"):
        generate(runtime, "x", messages=CONVERSATION)


def test_chat_session_reuses_the_cache_and_answers_as_from_scratch(runtime):
    session = ChatSession(runtime, system="You answer briefly.")
    first = "".join(session.send("Hello! 日本語 🤖", max_new_tokens=10))
    assert session.reused_tokens == 0 and first == session.last.text
    first_prompt = len(session.last.prompt_tokens)
    second = "".join(session.send("What is 2+2?", max_new_tokens=10))
    # the second turn ran only its new tokens: the first turn's prompt (and the reply, as
    # far as the template renders it as the tokens generated) came from the cache
    assert session.reused_tokens >= first_prompt
    assert session.last.prefill.tokens == len(session.last.prompt_tokens) - session.reused_tokens
    fresh = generate(runtime, messages=session.messages[:-1], max_new_tokens=10)
    assert session.last.prompt_tokens == fresh.prompt_tokens
    assert session.last.tokens == fresh.tokens and second == fresh.text
    session.reset()
    assert session.messages == [{"role": "system", "content": "You answer briefly."}]
    assert "".join(session.send("Hello! 日本語 🤖", max_new_tokens=10)) == first


def test_stop_strings_end_the_text_and_the_stream_agrees(runtime):
    plain = generate(runtime, "Once upon a time", max_new_tokens=24, eos_token_id=[])   # no early end
    assert len(plain.text) > 6
    stop = plain.text[3:6]
    pieces = []
    stopped = generate(runtime, "Once upon a time", max_new_tokens=24, stop=["\u2603never", stop],
                       eos_token_id=[], streamer=pieces.append)
    assert stopped.finish_reason == "stop"
    assert stopped.text == plain.text[:plain.text.index(stop)]
    assert "".join(pieces) == stopped.text
    for bad in ([""], [1], ["x"] * 17):
        with pytest.raises(UsageError, match="stop="):
            generate(runtime, "x", stop=bad)


def test_cli_chat_keeps_the_history(chat_model, capsys, monkeypatch):
    path, _ = chat_model
    lines = iter(["Hello!", "/reset", "Hello!", "And then?", "/exit"])   # what input() returns
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    status = main(["--model", str(path), "--chat", "--max-new-tokens", "6"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err.count("-- 6 tokens") + captured.err.count("tokens at") >= 3
    assert "new conversation" in captured.err
    reused = [line for line in captured.err.splitlines() if "reused from the cache" in line]
    assert reused[0].split(" of ")[0].endswith(" 0") and not reused[2].split(" of ")[0].endswith(" 0")
    assert main(["--model", str(path), "--system", "x", "--prompt", "hi"]) == 2
