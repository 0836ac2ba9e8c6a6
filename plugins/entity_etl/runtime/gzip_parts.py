"""The gzip writer and reader of extract parts: ISA-L (``isal.igzip``) when it is installed, else zlib.

Both write the same format (RFC 1952, one member, ``mtime=0``), read by Python's ``gzip`` and by the load
path. ISA-L's level 1 takes less CPU than zlib's and writes fewer bytes (figures: bench/gzip_backends.py,
bench/README.md). The output bytes differ between the backends; what they
decompress to does not. ISA-L also reads any gzip stream, with less CPU than zlib.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, cast

_igzip: ModuleType | None
_isal_error: tuple[type[BaseException], ...]
try:
    from isal import igzip as _igzip
    from isal.isal_zlib import IsalError

    _isal_error = (cast("type[BaseException]", IsalError),)  # its stub declares an instance, not the class
except ImportError:  # pragma: no cover - isal is a runtime dependency; zlib stays a working fallback
    _igzip, _isal_error = None, ()

#: What reading a damaged part raises: not gzip, truncated, a bad CRC (either backend).
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, *_isal_error)

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


def part_reader(path: Path, use: str | None = None) -> BinaryIO:
    """The decompressed bytes of the gzip part at ``path``, read as a stream (close it after use); a
    damaged part raises one of :data:`READ_ERRORS` while it is read."""
    chosen = use or backend()
    if chosen == "isal":
        if _igzip is None:
            raise RuntimeError("gzip backend 'isal' requested but the isal package is not installed")
        return _igzip.open(path, "rb")
    if chosen != "zlib":
        raise ValueError(f"unknown gzip backend {chosen!r} (expected 'isal' or 'zlib')")
    return gzip.open(path, "rb")  # type: ignore[return-value]
