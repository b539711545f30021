"""Model files: bad ones give one clear error class; the dequantization cache is reused."""

import os

import numpy as np
import pytest

from host.llm.model import ModelFileError, load_model
from host.llm.model.cache import cache_root

from host_testmodels import small_vocab, write_llama2c, write_llama_gguf, write_tokenizer_bin
from test_host_transformer import make_llama


@pytest.fixture(scope="module")
def llama():
    return make_llama(seed=4)


def expect_error(path, match, **options):
    with pytest.raises(ModelFileError, match=match) as caught:
        load_model(path, **options)
    assert str(path) in str(caught.value)       # the message names the file
    return caught.value


def test_wrong_magic_and_missing_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"hello, this is not a model at all")
    expect_error(bad, "unrecognised format")
    expect_error(tmp_path / "absent.gguf", "no such file")


def test_truncated_gguf(tmp_path, llama):
    path = write_llama_gguf(tmp_path / "m.gguf", llama)
    data = path.read_bytes()
    for keep in (len(data) - 1000, len(data) // 3, 40):
        cut = tmp_path / f"cut{keep}.gguf"
        cut.write_bytes(data[:keep])
        expect_error(cut, "truncated", cache_dir=tmp_path / "cache")


def test_unsupported_architecture_quant_type_and_missing_tensor(tmp_path, llama):
    expect_error(write_llama_gguf(tmp_path / "q.gguf", llama, architecture="phi3"),
                 "unsupported architecture 'phi3'", cache_dir=tmp_path)
    error = expect_error(write_llama_gguf(tmp_path / "i.gguf", llama,
                                          int32_tensors=("blk.0.ffn_up.weight",)),
                         "blk.0.ffn_up.weight has unsupported type I32", cache_dir=tmp_path)
    assert "Q4_K" in str(error)          # it lists what is supported
    expect_error(write_llama_gguf(tmp_path / "d.gguf", llama, drop=("blk.1.attn_v.weight",)),
                 "tensor blk.1.attn_v.weight is missing", cache_dir=tmp_path)


def test_llama2c_bad_files(tmp_path, llama):
    pieces, scores, _ = small_vocab(320, ["<unk>", "<s>", "</s>"])
    write_tokenizer_bin(tmp_path / "tokenizer.bin", pieces, scores)
    good = write_llama2c(tmp_path / "good.bin", llama, version=0)
    data = good.read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-4])
    expect_error(tmp_path / "short.bin", "truncated")
    (tmp_path / "long.bin").write_bytes(data + b"\0" * 8)
    expect_error(tmp_path / "long.bin", "8 unexpected bytes")
    v2 = write_llama2c(tmp_path / "v2.bin", llama, version=2, group_size=32).read_bytes()
    (tmp_path / "v3.bin").write_bytes(v2[:4] + (3).to_bytes(4, "little") + v2[8:])
    expect_error(tmp_path / "v3.bin", "version 3 is not supported")
    (tmp_path / "v2short.bin").write_bytes(v2[: len(v2) // 2])
    expect_error(tmp_path / "v2short.bin", "truncated")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "model.bin").write_bytes(data)
    with pytest.raises(ModelFileError, match="tokenizer.bin not found"):
        load_model(alone / "model.bin")
    (alone / "tokenizer.bin").write_bytes((tmp_path / "tokenizer.bin").read_bytes()[:500])
    with pytest.raises(ModelFileError, match="truncated tokenizer.bin"):
        load_model(alone / "model.bin")


def test_gguf_cache_is_written_once_and_reused(tmp_path, llama, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "systole"
    path = write_llama_gguf(tmp_path / "m.gguf", llama)
    first = load_model(path, progress=False)
    entries = list((tmp_path / "xdg" / "systole" / "models").iterdir())
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()

    import gguf

    parses = []
    original = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a, **k: parses.append(a) or original(*a, **k))
    second = load_model(path, progress=False)
    assert parses == []                  # served from the cache, no GGUF parse
    assert second.config == first.config
    assert second.tokenizer.encode("Once upon a time") == first.tokenizer.encode("Once upon a time")
    for name, array in first.weights.items():
        np.testing.assert_array_equal(second.weights[name], array)
    # a changed file is a new cache entry, not a stale hit
    os.utime(path, ns=(1, 1))
    load_model(path, progress=False)
    assert len(parses) == 1
