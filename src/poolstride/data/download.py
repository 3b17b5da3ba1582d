"""Plain-``urllib`` downloads from the canonical URLs, verified by md5, written atomically."""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..results.io import atomic_open

TIMEOUT_S = 60.0


def _urlopen(url: str) -> Any:
    """Indirection so tests can serve bytes without a network."""
    req = urllib.request.Request(url, headers={"User-Agent": "poolstride"})
    return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - fixed https/http dataset URLs


class _ChecksumMismatch(Exception):
    """A download whose md5 is not the expected one (the next URL is tried)."""


def md5_file(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(urls: Sequence[str], dest: Path, md5: str, name: str, hint: str) -> Path:
    """Download the first URL that works to ``dest`` (skipped if ``dest`` already has the right md5).

    Raises DataError naming the URLs, the reason and ``hint`` (where to put the file by hand).
    """
    if dest.is_file() and md5_file(dest) == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    reasons = []
    for url in urls:
        try:
            with atomic_open(dest, "wb", suffix=".part") as out, _urlopen(url) as resp:
                h = hashlib.md5(usedforsecurity=False)
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    h.update(chunk)
                    out.write(chunk)
                if h.hexdigest() != md5:  # raised inside the block: dest is left as it was
                    raise _ChecksumMismatch(f"{url}: checksum mismatch (md5 {h.hexdigest()}, expected {md5})")
            return dest
        except _ChecksumMismatch as e:
            reasons.append(str(e))
        except (urllib.error.URLError, OSError, ValueError) as e:
            reasons.append(f"{url}: {getattr(e, 'reason', None) or e}")
    raise DataError(f"{name}: download failed ({'; '.join(reasons)}); {hint}")


def extract_tar(archive: Path, dest: Path, name: str) -> None:
    """Extract a .tar.gz safely (no absolute paths, no '..', no links outside ``dest``)."""
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                root = dest.resolve()
                for m in tar.getmembers():
                    target = (dest / m.name).resolve()
                    if not str(target).startswith(str(root)) or m.issym() or m.islnk():
                        raise DataError(f"{name}: refusing to extract unsafe member {m.name!r} of {archive}")
                tar.extractall(dest)  # noqa: S202 - members checked above
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{name}: cannot extract {archive} ({e}); delete it and download again") from None
