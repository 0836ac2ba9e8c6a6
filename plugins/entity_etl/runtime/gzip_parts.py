"""The gzip writer for extract parts: ISA-L (``isal.igzip``) at level 1 when it is installed, else zlib.

Both write the same format (RFC 1952, one member, ``mtime=0``), read by Python's ``gzip`` and by the load
path. ISA-L's level 1 takes less CPU than zlib's and writes fewer bytes (figures: bench/gzip_backends.py,
bench/README.md). The output bytes differ between the backends; what they
decompress to does not.
"""

from __future__ import annotations

import gzip
from types import ModuleType
from typing import BinaryIO

_igzip: ModuleType | None
try:
    from isal import igzip as _igzip
except ImportError:  # pragma: no cover - isal is a runtime dependency; zlib stays a working fallback
    _igzip = None

# zlib's level 1: several times faster than gzip's default 9 for a few more bytes (bench/README.md).
ZLIB_LEVEL = 1
# ISA-L's levels are 0..3; 1 is its fast default for streams.
ISAL_LEVEL = 1


def backend() -> str:
    """``"isal"`` when ISA-L is importable, else ``"zlib"``."""
    return "isal" if _igzip is not None else "zlib"


def part_writer(raw: BinaryIO, use: str | None = None) -> BinaryIO:
    """A gzip stream writing into ``raw`` (which the caller closes after this one); ``use`` forces a backend."""
    chosen = use or backend()
    if chosen == "isal":
        if _igzip is None:
            raise RuntimeError("gzip backend 'isal' requested but the isal package is not installed")
        return _igzip.IGzipFile(fileobj=raw, mode="wb", compresslevel=ISAL_LEVEL, mtime=0)
    if chosen != "zlib":
        raise ValueError(f"unknown gzip backend {chosen!r} (expected 'isal' or 'zlib')")
    return gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=ZLIB_LEVEL, mtime=0)  # type: ignore[return-value]
