"""The one file layer of poolstride: atomic writes (a temp file in the same directory, fsync, then ``os.replace``),
an exclusive create, an atomic directory swap, JSON reads with one clear error, JSON cleaning and the UTC
timestamp every record carries."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ..errors import PoolstrideError


class ResultFileError(PoolstrideError):
    """A results file that cannot be read: ``missing`` (no such file) or not readable JSON; ``detail`` holds the
    original reason (so a caller can word its own message)."""

    def __init__(self, message: str, *, path: Path | None = None, detail: str = "", missing: bool = False) -> None:
        super().__init__(message)
        self.path, self.detail, self.missing = path, detail, missing


def utc_now() -> str:
    """The current UTC time as every record stamps it: ``2026-11-28T10:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_json(path: str | Path, what: str) -> Any:
    """The JSON in ``path``; a missing, unreadable or corrupted file raises :class:`ResultFileError` naming
    ``what`` it is (``"study.json"``, ``"run config"``...)."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ResultFileError(f"no {what}: {p} does not exist", path=p, detail=str(e), missing=True) from None
    except (OSError, ValueError) as e:  # ValueError: not JSON, not UTF-8
        raise ResultFileError(f"{what} {p} is unreadable or corrupted ({e})", path=p, detail=str(e)) from None


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """A file that replaces ``path`` only when the block ends without an exception (a reader never sees a
    half-written file; an exception leaves ``path`` as it was and no temporary file behind)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=_default, allow_nan=False) + "\n")


def save_torch(path: Path, obj: Any) -> None:
    import torch  # the results layer itself needs no torch; only a checkpoint write does

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def create_exclusive(path: Path, text: str) -> bool:
    """Write ``path`` only if it does not exist, atomically and exclusively (of two processes, the first wins);
    True when this call created it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # atomic, and fails when path exists
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def set_aside(path: Path, name: str) -> Path:
    """Rename ``path`` to ``name`` in the same directory, atomically (an old result kept beside its rerun)."""
    dest = path.with_name(name)
    os.replace(path, dest)
    return dest


def make_temp_dir(final: Path, prefix: str | None = None) -> Path:
    """A fresh temporary sibling directory of ``final``, to fill and then :func:`replace_dir` into place."""
    return Path(tempfile.mkdtemp(prefix=prefix or f".{final.name}.tmp-", dir=final.parent))


def replace_dir(tmp: Path, final: Path, attempts: int = 20) -> bool:
    """Replace directory ``final`` by ``tmp`` (two renames: a reader never sees a half-written directory; of
    concurrent writers the last wins). False when other writers kept replacing it for every attempt."""
    for _attempt in range(attempts):
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex}")  # unique: threads share a pid
            try:
                os.replace(final, old)
            except FileNotFoundError:
                old = None
            except OSError:
                time.sleep(0.05)
                continue
        try:
            os.replace(tmp, final)
        except OSError:  # another writer put its directory in between: retry
            time.sleep(0.05)
            continue
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return True
    return False


def _default(o: Any) -> Any:
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # torch tensors and numpy arrays
        return o.tolist()
    return str(o)


def clean_json(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN) recursively."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    return obj
