"""The user's model cache: dequantized tensors stored once, memory-mapped afterwards.

Layout: ``<cache_root>/models/<key>/`` holds ``manifest.json`` (source file, config,
tensor names, metadata, and the size and SHA-256 of every file), one ``.npy`` per
tensor and ``verified.json``. ``key`` hashes the source file's resolved path, size and
modification time plus ``FORMAT_VERSION``, so editing or replacing a model file, or
changing how this code stores it, never reuses a stale entry.

What an entry guarantees:

- **Checked on every load, cheaply.** ``verify`` compares each file's size with the
  manifest and hashes a file only when its identity (size, mtime, ctime, inode)
  differs from the one ``verified.json`` recorded when it was last hashed. A warm
  load costs one ``stat`` per file; a file that was overwritten, truncated, replaced
  or deleted is found, and ``load_gguf`` rebuilds the entry with one line on stderr
  naming the file. Bit rot that leaves a file's identity unchanged is not detected.
- **Atomic.** An entry is written into a staging folder ``.<key>-<pid>-*`` that is
  renamed into place, so no reader sees half an entry. The builder holds an
  ``flock`` on the folder's ``.building`` file; ``remove_stale`` deletes staging
  folders whose lock is free (their builder died), so two processes may build the
  same entry at once: the first rename wins and the other uses the winner's entry.
- **Bounded.** Writing an entry first deletes the other entries of the same source
  file (its older versions). With a cap, ``SYSTOLE_CACHE_MAX_GB`` in the environment
  (gigabytes, 1e9 bytes) or ``max_bytes``, the least recently used entries (by the
  time ``mark_used`` stamps on each load) are deleted until the cache fits; the entry
  being loaded or written is never deleted, even when it alone exceeds the cap.
- **A full disk is one line.** ``write`` checks the free space against the expected
  size before writing and turns ``ENOSPC`` during the write into ``CacheError``,
  naming the folder and the space needed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ...errors import SystoleError, UsageError

__all__ = ["FORMAT_VERSION", "MAX_GB_VARIABLE", "CacheError", "cache_root", "file_identity",
           "hash_file", "TensorCache"]

FORMAT_VERSION = 4          # 2: the manifest records every file's size and SHA-256; 3: built by the validating loaders;
                            # 4: BPE tokenizers, stop tokens and chat templates in the manifest
MAX_GB_VARIABLE = "SYSTOLE_CACHE_MAX_GB"

# SHA-256 rather than BLAKE2b: on a 100 MiB file, hashlib.file_digest took 70 ms with
# sha256 and 157 ms with blake2b here (OpenSSL 3.0 uses the CPU's SHA extensions).
HASH = "sha256"

MANIFEST = "manifest.json"
STAMPS = "verified.json"
LOCK = ".building"
TRASH_PREFIX = ".trash-"
STALE_IDLE_SECONDS = 60              # a free lock alone may be a builder that just started
STALE_UNLOCKED_SECONDS = 24 * 3600   # staging folders without a usable lock (older versions)


class CacheError(SystoleError, OSError):
    """The cache cannot hold an entry (a full disk); the message names the folder and the space."""

    def __init__(self, message: str, error_number: int | None = None):
        super().__init__(error_number, message)

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):          # OSError's would pass (errno, message) in the wrong order
        return type(self), (self.strerror, self.errno)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/systole``, else ``~/.cache/systole``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "systole"


def file_identity(path: str | Path) -> str:
    """A short key for this version of the file: resolved path, size and mtime."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    text = f"{resolved}|{stat.st_size}|{stat.st_mtime_ns}|v{FORMAT_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def hash_file(path: Path) -> str:
    """The hex SHA-256 of the file's bytes."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, HASH).hexdigest()


def max_bytes_from_environment() -> int | None:
    """The cap ``SYSTOLE_CACHE_MAX_GB`` sets, in bytes; ``None`` when it is unset or empty."""
    text = os.environ.get(MAX_GB_VARIABLE, "").strip()
    if not text:
        return None
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = math.nan
    if not (math.isfinite(gigabytes) and gigabytes >= 0):
        raise UsageError(f"{MAX_GB_VARIABLE}={text!r} is not a size in gigabytes (a number >= 0, e.g. 5 or 0.5)")
    return int(gigabytes * 1e9)


class TensorCache:
    """One cache entry: a manifest plus named arrays, checked against recorded hashes."""

    def __init__(self, key: str, root: Path | None = None, max_bytes: int | None = None):
        self.key = key
        self.directory = (root or cache_root()) / "models" / key
        self.max_bytes = max_bytes if max_bytes is not None else max_bytes_from_environment()

    @property
    def models(self) -> Path:
        """The folder holding every entry (and the staging folders)."""
        return self.directory.parent

    def exists(self) -> bool:
        """Whether the entry was installed (its manifest is there); see ``verify`` for intact."""
        return (self.directory / MANIFEST).is_file()

    def read_manifest(self) -> dict:
        return json.loads((self.directory / MANIFEST).read_text())

    def load(self, name: str, mmap: bool = True) -> np.ndarray:
        """The array stored under ``name`` (memory-mapped read-only by default)."""
        return np.load(self.directory / _file_name(name), mmap_mode="r" if mmap else None)

    # -- checking ------------------------------------------------------------------------
    def verify(self) -> str | None:
        """``None`` when every file is the one written; else what is wrong, naming the file.

        A file is hashed when its identity is not the one recorded in ``verified.json``,
        or when it changed no earlier than that record was written (git's "racy" rule: a
        change within one timestamp tick of the record would leave the identity equal).
        """
        manifest_path = self.directory / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text())
        except FileNotFoundError:
            return f"{manifest_path} is missing"
        except (OSError, ValueError) as error:      # JSON and UTF-8 errors are ValueErrors
            return f"{manifest_path} is unreadable ({error})"
        try:
            files = manifest["files"]
            expected = {name: (int(entry["size"]), str(entry[HASH])) for name, entry in files.items()}
            unlisted = [n for n in manifest["tensors"] if _file_name(n) not in expected]
        except (TypeError, KeyError, AttributeError, ValueError):
            return f"{manifest_path} does not list the size and {HASH} of every file"
        if unlisted:
            return f"{manifest_path} does not list the file of tensor {unlisted[0]}"
        recorded, recorded_at = self._read_stamps()
        stamps, rehashed = {}, False
        for file_name, (size, digest) in expected.items():
            path = self.directory / file_name
            try:
                status = path.stat()
            except FileNotFoundError:
                return f"{path} is missing"
            if status.st_size != size:
                return f"{path} has {status.st_size} bytes, the manifest says {size}"
            stamp = _stamp(status)
            if recorded.get(file_name) != stamp or max(status.st_mtime_ns, status.st_ctime_ns) >= recorded_at:
                if hash_file(path) != digest:
                    return f"{path} does not match its recorded {HASH} (overwritten or corrupt)"
                rehashed = True
            stamps[file_name] = stamp
        if rehashed:
            try:
                _write_stamps(self.directory, stamps)
            except OSError:
                pass        # a read-only cache still works; it is hashed again next time
        return None

    def _read_stamps(self) -> tuple[dict, int]:
        path = self.directory / STAMPS
        try:
            recorded_at = path.stat().st_mtime_ns
            stamps = json.loads(path.read_text())["files"]
            return (stamps if isinstance(stamps, dict) else {}), recorded_at
        except (OSError, ValueError, KeyError, TypeError):
            return {}, 0

    # -- writing -------------------------------------------------------------------------
    def write(self, manifest: dict, arrays, *, expected_bytes: int = 0) -> None:
        """Store ``arrays`` (an iterable of ``(name, array)``) and ``manifest`` atomically.

        Before writing it deletes the other entries of ``manifest["source"]`` and, under
        a cap, least recently used entries to make room for ``expected_bytes``; then it
        checks the free space. A full disk raises ``CacheError``; a damaged entry at
        this key is replaced.
        """
        staging, lock = None, None
        try:
            self.models.mkdir(parents=True, exist_ok=True)
            self._evict(source=manifest.get("source"), incoming=expected_bytes)
            free = shutil.disk_usage(self.models).free
            if free < expected_bytes:
                raise CacheError(f"not enough free space in {self.models}: the cache entry for "
                                 f"{_source_name(manifest)} needs {_size(expected_bytes)}, "
                                 f"{_size(free)} is free; {_REMEDY}", errno.ENOSPC)
            staging = Path(tempfile.mkdtemp(prefix=f".{self.key}-{os.getpid()}-", dir=self.models))
            lock = _hold_lock(staging / LOCK)
            names, files = [], {}
            for name, array in arrays:
                files[_file_name(name)] = _save(staging / _file_name(name), array)
                names.append(name)
            (staging / MANIFEST).write_text(json.dumps({**manifest, "tensors": names, "files": files}))
            _write_stamps(staging, {name: _stamp((staging / name).stat()) for name in files})
            (staging / LOCK).unlink()
            self._install(staging)
        except CacheError:
            raise
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                raise CacheError(f"the disk holding {self.models} filled up while writing the cache "
                                 f"entry for {_source_name(manifest)} ({_size(expected_bytes)} "
                                 f"needed); {_REMEDY}", error.errno) from None
            raise
        finally:
            if lock is not None:
                os.close(lock)
            if staging is not None and staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        self._evict()

    def _install(self, staging: Path) -> None:
        for _ in range(3):
            try:
                os.rename(staging, self.directory)
                return
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if self.verify() is None:       # a concurrent builder installed the entry first
                return
            _delete(self.directory)         # the damaged entry this build replaces
        raise CacheError(f"cannot install {self.directory}: other processes keep replacing it")

    # -- housekeeping --------------------------------------------------------------------
    def mark_used(self) -> None:
        """Stamp the entry as just used (for least-recently-used eviction); apply the cap."""
        now = time.time_ns()
        try:
            os.utime(self.directory, ns=(now, now))
        except OSError:
            pass
        if self.max_bytes is not None:
            self._evict()

    def remove_stale(self) -> None:
        """Delete the staging folders of builds that died, and leftovers of deletions."""
        try:
            children = [child for child in self.models.iterdir() if child.name.startswith(".")]
        except FileNotFoundError:
            return
        for child in children:
            if child.name.startswith(TRASH_PREFIX):
                shutil.rmtree(child, ignore_errors=True)
            elif child.is_dir() and _staging_is_stale(child):
                shutil.rmtree(child, ignore_errors=True)

    def _evict(self, source: str | None = None, incoming: int = 0) -> None:
        """Delete the entries of ``source`` but this one, then LRU entries over the cap."""
        others = []
        for child in self.models.iterdir():
            if child.name.startswith(".") or child == self.directory or not child.is_dir():
                continue
            if source is not None and _same_source(child, source):
                _delete(child)
            elif self.max_bytes is not None:
                others.append((child.stat().st_mtime_ns, _folder_bytes(child), child))
        if self.max_bytes is None:
            return
        total = sum(size for _, size, _ in others) + (incoming or _folder_bytes(self.directory))
        for _, size, child in sorted(others, key=lambda entry: entry[0]):
            if total <= self.max_bytes:
                break
            _delete(child)
            total -= size


_REMEDY = "free some space, or set XDG_CACHE_HOME to a folder on a larger disk"


class _HashingWriter:
    """A write-only file that hashes what passes through it (for ``np.lib.format``)."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _save(path: Path, array: np.ndarray) -> dict:
    """Write ``array`` as ``.npy``; return its size and hash, taken from the bytes written."""
    digest = hashlib.new(HASH)
    with open(path, "wb") as handle:
        np.lib.format.write_array(_HashingWriter(handle, digest), np.ascontiguousarray(array),
                                  allow_pickle=False)
        size = handle.tell()
    return {"size": size, HASH: digest.hexdigest()}


def _stamp(status: os.stat_result) -> list[int]:
    return [status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino]


def _write_stamps(directory: Path, stamps: dict) -> None:
    temporary = directory / f".{STAMPS}.{os.getpid()}.tmp"
    temporary.write_text(json.dumps({"files": stamps}))
    os.replace(temporary, directory / STAMPS)


def _hold_lock(path: Path) -> int | None:
    """An open, locked ``path``: the sign that this staging folder has a live builder."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:             # a file system without flock: the age rule applies instead
        pass
    return fd


def _staging_is_stale(folder: Path) -> bool:
    try:
        idle = time.time() - folder.stat().st_mtime
    except FileNotFoundError:
        return False
    try:
        fd = os.open(folder / LOCK, os.O_RDWR)
    except FileNotFoundError:       # no lock: a folder of an older version, or being renamed
        return idle > STALE_UNLOCKED_SECONDS
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False                # its builder is alive
    except OSError:
        return idle > STALE_UNLOCKED_SECONDS
    finally:
        os.close(fd)
    return idle > STALE_IDLE_SECONDS


def _same_source(entry: Path, source: str) -> bool:
    try:
        other = json.loads((entry / MANIFEST).read_text())["source"]
        return Path(other).resolve() == Path(source).resolve()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _delete(folder: Path) -> None:
    """Remove ``folder``: renamed out of sight first, so no reader finds it half deleted."""
    trash = folder.with_name(f"{TRASH_PREFIX}{folder.name}-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
    except FileNotFoundError:
        return 0


def _source_name(manifest: dict) -> str:
    return Path(manifest.get("source", "?")).name


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def _file_name(name: str) -> str:
    return name.replace("/", "_") + ".npy"
