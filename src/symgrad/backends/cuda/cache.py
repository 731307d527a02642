"""An on-disk cache of compiled artifacts (cubins, PTX, host-shim libraries).

Entries are keyed by a SHA-256 over everything that affects the artifact (for a cubin:
the source, NVRTC's version, the architecture and the options). Each file starts with a
magic string, the SHA-256 of its payload and the payload's length; a file that fails the
check (truncated, overwritten, from an older format) is deleted and reported as a miss, so
the caller rebuilds it. Writes go to a temporary file in the same directory and are
renamed into place, so readers never see half a file, even with concurrent writers.

The directory is ``$SYMGRAD_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/symgrad`` (or
``~/.cache/symgrad``); ``SYMGRAD_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from symgrad.backends.base import atomic_write

MAGIC = b"SGCACHE1"
_HEADER = struct.Struct("<8s32sQ")


def cache_root() -> Path:
    """The directory under which symgrad keeps its caches."""
    env = os.environ.get("SYMGRAD_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "symgrad"


def cache_enabled() -> bool:
    return os.environ.get("SYMGRAD_CACHE", "1") not in ("0", "false", "no", "off")


def make_key(*parts: str | bytes) -> str:
    """A hex SHA-256 over length-prefixed parts (so ("ab", "c") != ("a", "bc"))."""
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


@dataclass
class ArtifactCache:
    """Checked, atomically written files under ``directory``."""

    directory: Path
    suffix: str = ".bin"
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    write_errors: list[str] = field(default_factory=list)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        """The payload stored under ``key``, or None (missing or corrupt: rebuild it)."""
        if not cache_enabled():
            self.misses += 1
            return None
        p = self.path(key)
        try:
            blob = p.read_bytes()
        except OSError:
            self.misses += 1
            return None
        payload = _unpack(blob)
        if payload is None:
            self.corrupt += 1
            self.misses += 1
            try:
                p.unlink()
            except OSError:
                pass
            return None
        self.hits += 1
        return payload

    def put(self, key: str, payload: bytes) -> Path | None:
        """Store ``payload``; returns its path, or None if the cache is off or unwritable."""
        if not cache_enabled():
            return None
        p = self.path(key)
        blob = _HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload
        try:
            atomic_write(p, blob)
        except OSError as e:
            self.write_errors.append(f"{p}: {e}")
            return None
        return p


def _unpack(blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, digest, length = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload
