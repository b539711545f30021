"""The model cache checks what is on disk: damage is rebuilt, leftovers and old entries go.

Every case builds a tiny Llama GGUF (host_testmodels) into its own cache folder,
damages the cache the way a crash, a full disk or a stray write would, and checks the
next load: it works, says in one line on stderr which file was bad, and the weights
equal the ones first written.
"""

import errno
import fcntl
import os
import time

import numpy as np
import pytest

from host.cli import run
from host.errors import SystoleError
from host.llm.linear import calibrate
from host.llm.model import file_identity, load_model
from host.llm.quant import ActivationStats

from host_testmodels import write_llama_gguf
from test_host_transformer import make_llama

PROMPT = "Once upon a time the cat sat on the mat."
CALIBRATION_TEXTS = [PROMPT, "a time"]


@pytest.fixture(autouse=True)
def no_cap_from_the_environment(monkeypatch):
    monkeypatch.delenv("SYSTOLE_CACHE_MAX_GB", raising=False)


@pytest.fixture(scope="module")
def llama():
    return make_llama(seed=7)


@pytest.fixture
def gguf(tmp_path, llama):
    return write_llama_gguf(tmp_path / "m.gguf", llama)


def load(path, cache_dir):
    return load_model(path, cache_dir=cache_dir, progress=False)


def entries(cache_dir) -> list:
    """The installed entries (staging and trash folders start with a dot)."""
    models = cache_dir / "models"
    return sorted(p for p in models.iterdir() if not p.name.startswith(".")) if models.exists() else []


def in_memory(model) -> dict:
    return {name: np.array(array) for name, array in model.weights.items()}


def fill_with_ff(path, start=128):
    """Overwrite everything after the .npy header with 0xFF; the size stays."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.seek(start)
        handle.write(b"\xff" * (size - start))


def ff_in_middle(path):
    with open(path, "r+b") as handle:
        handle.seek(path.stat().st_size // 2)
        handle.write(b"\xff" * 64)


def truncate(path):
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def unreadable(path):
    path.write_text('{"config": {"dim": 64, ')


DAMAGE = {
    "overwritten_with_0xff": ("blk.0.ffn_up.weight.npy", fill_with_ff),
    "truncated": ("token_embd.weight.npy", truncate),
    "deleted_tensor": ("blk.1.attn_v.weight.npy", os.unlink),
    "corrupt_tokenizer_blob": ("tokenizer.model.npy", fill_with_ff),
    "unreadable_manifest": ("manifest.json", unreadable),
    "deleted_manifest": ("manifest.json", os.unlink),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_entry_is_rebuilt(tmp_path, gguf, capsys, kind):
    cache_dir = tmp_path / "cache"
    first = load(gguf, cache_dir)
    original, tokens = in_memory(first), first.tokenizer.encode(PROMPT)
    del first
    file_name, damage = DAMAGE[kind]
    [entry] = entries(cache_dir)
    damage(entry / file_name)
    capsys.readouterr()

    again = load(gguf, cache_dir)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(entry / file_name) in err and "rebuilding" in err, err
    assert again.tokenizer.encode(PROMPT) == tokens
    assert again.weights.keys() == original.keys()
    for name, array in original.items():
        np.testing.assert_array_equal(again.weights[name], array, err_msg=name)
    assert entries(cache_dir) == [entry]
    load(gguf, cache_dir)
    assert capsys.readouterr().err == ""        # the rebuilt entry is trusted


def test_warm_load_hashes_nothing(tmp_path, gguf, monkeypatch):
    from host.llm.model import cache as cache_module

    cache_dir = tmp_path / "cache"
    load(gguf, cache_dir)
    time.sleep(0.05)            # past the timestamp tick of the build ("racy" files)
    load(gguf, cache_dir)
    hashed = []
    original = cache_module.hash_file
    monkeypatch.setattr(cache_module, "hash_file", lambda path: hashed.append(path) or original(path))
    load(gguf, cache_dir)
    assert hashed == []
    [entry] = entries(cache_dir)
    os.utime(entry / "output.weight.npy")        # a new identity: that file alone is hashed
    load(gguf, cache_dir)
    assert [p.name for p in hashed] == ["output.weight.npy"]


def _calibration_file(cache_home):
    [path] = (cache_home / "systole" / "calibration").glob("*.npz")
    return path


def _drop_a_layer(path):
    stats = ActivationStats.load(path)
    del stats.absmax["blk.1.ffn_down"]
    stats.save(path)


@pytest.mark.parametrize("damage", [ff_in_middle, truncate, _drop_a_layer],
                         ids=["overwritten_with_0xff", "truncated", "missing_layer"])
def test_damaged_calibration_file_is_recomputed(tmp_path, gguf, monkeypatch, capsys, damage):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home"))
    model = load(gguf, tmp_path / "cache")
    first = calibrate(model, CALIBRATION_TEXTS)
    path = _calibration_file(tmp_path / "home")
    damage(path)
    capsys.readouterr()

    again = calibrate(model, CALIBRATION_TEXTS)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "recomputing" in err, err
    rewritten = ActivationStats.load(path)
    for stats in (again, rewritten):
        assert stats.tokens == first.tokens and stats.absmax.keys() == first.absmax.keys()
        for name, absmax in first.absmax.items():
            np.testing.assert_array_equal(stats.absmax[name], absmax, err_msg=name)


def test_stale_staging_folders_are_removed(tmp_path, gguf):
    cache_dir = tmp_path / "cache"
    load(gguf, cache_dir)
    models = cache_dir / "models"
    key, an_hour_ago, two_days_ago = file_identity(gguf), time.time() - 3600, time.time() - 2 * 86400

    def staging(name, age, lock=True):
        folder = models / name
        folder.mkdir()
        (folder / "blk.0.attn_q.weight.npy").write_bytes(b"\0" * 4096)
        if lock:
            (folder / ".building").touch()
        os.utime(folder, (age, age))
        return folder

    dead = staging(f".{key}-99999999-abcd", an_hour_ago)               # its builder was killed
    alive = staging(f".{key}-{os.getpid()}-efgh", an_hour_ago)         # a builder still at work
    holder = os.open(alive / ".building", os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    older_version = staging(f".{key}-ijkl", two_days_ago, lock=False)  # mkdtemp of the old code
    just_made = staging(f".{key}-mnop", time.time(), lock=False)       # a builder about to lock
    trash = staging(f".trash-{key}-123-qrst", time.time(), lock=False)  # a deletion cut short
    try:
        load(gguf, cache_dir)
        assert not dead.exists() and not older_version.exists() and not trash.exists()
        assert alive.exists() and just_made.exists()
    finally:
        os.close(holder)


def test_concurrent_builder_keeps_its_staging_and_loses_the_race(tmp_path, gguf, monkeypatch):
    """A second load while the first is writing: it installs first, the first uses its entry."""
    from host.llm.model import gguf_file

    cache_dir, nested = tmp_path / "cache", []
    original = gguf_file._dequantize

    def dequantize_and_race(path, tensor):
        if not nested:
            nested.append(None)
            nested[0] = load(gguf, cache_dir)          # runs remove_stale beside our staging
        return original(path, tensor)

    monkeypatch.setattr(gguf_file, "_dequantize", dequantize_and_race)
    first = load(gguf, cache_dir)
    assert len(entries(cache_dir)) == 1 and os.listdir(cache_dir / "models") == [entries(cache_dir)[0].name]
    for name, array in nested[0].weights.items():
        np.testing.assert_array_equal(first.weights[name], array)


def test_full_disk_is_one_line_naming_the_folder(tmp_path, gguf, monkeypatch, capsys):
    import shutil

    cache_dir = tmp_path / "cache"
    models = cache_dir / "models"
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(SystoleError) as caught:
        load(gguf, cache_dir)
    message = str(caught.value)
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert "\n" not in message and str(models) in message and "needs" in message, message
    assert os.listdir(models) == []
    monkeypatch.undo()

    writes = []

    def write_array_until_full(*args, **kwargs):
        writes.append(1)
        if len(writes) > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    original = np.lib.format.write_array
    monkeypatch.setattr(np.lib.format, "write_array", write_array_until_full)
    capsys.readouterr()
    assert run(lambda argv: load(gguf, cache_dir) and 0) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and str(models) in err, err
    assert os.listdir(models) == []          # the staging folder went too


def test_touched_gguf_evicts_its_old_entry(tmp_path, gguf, capsys):
    cache_dir = tmp_path / "cache"
    other = write_llama_gguf(tmp_path / "other.gguf", make_llama(seed=8))
    load(other, cache_dir)
    load(gguf, cache_dir)
    [old_entry] = [e for e in entries(cache_dir) if e.name == file_identity(gguf)]
    stat = gguf.stat()
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load(gguf, cache_dir)
    names = [e.name for e in entries(cache_dir)]
    assert sorted(names) == sorted([file_identity(gguf), file_identity(other)])
    assert not old_entry.exists()
    assert capsys.readouterr().err == ""


def _entry_bytes(entry) -> int:
    return sum(f.stat().st_size for f in entry.iterdir())


def test_size_cap_evicts_least_recently_used(tmp_path, llama, monkeypatch):
    cache_dir = tmp_path / "cache"
    a, b, c = (write_llama_gguf(tmp_path / f"{n}.gguf", llama) for n in "abc")
    load(a, cache_dir)
    load(b, cache_dir)
    size = _entry_bytes(entries(cache_dir)[0])
    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", str(2.5 * size / 1e9))   # room for two entries
    load(a, cache_dir)                       # a is now more recent than b
    assert {e.name for e in entries(cache_dir)} == {file_identity(a), file_identity(b)}
    load(c, cache_dir)
    assert {e.name for e in entries(cache_dir)} == {file_identity(a), file_identity(c)}

    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", "0.000001")              # smaller than one entry
    model = load(b, cache_dir)
    assert [e.name for e in entries(cache_dir)] == [file_identity(b)]    # never the one loaded
    assert model.tokenizer.encode(PROMPT)
    monkeypatch.setenv("SYSTOLE_CACHE_MAX_GB", "lots")
    with pytest.raises(SystoleError, match="SYSTOLE_CACHE_MAX_GB='lots'"):
        load(b, cache_dir)
