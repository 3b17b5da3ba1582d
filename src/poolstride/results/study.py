"""A study directory on disk (``docs/study-format.md``): where each run lives, and the one reader of
``study.json``. The engine writes through these names and the report, the status and the replays read through
them, so a writer and its readers cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypedDict

from . import schema
from .io import ResultFileError, read_json, write_json


class StudyFileError(ResultFileError):
    """``study.json`` is missing, unreadable, or of another schema; ``kind`` says which (``missing``,
    ``unreadable``, ``schema``) and ``detail`` the original reason, so that a caller can word its own message."""

    kind = "unreadable"


class RunResult(TypedDict, total=False):
    """The fields every run's ``result.json`` has, ok or failed (``poolstride.run/1``); a finished run adds its
    measurements (every field in docs/study-format.md). :func:`write_result` refuses a record without one."""

    schema: str
    variant: str
    seed: int
    status: str  # "ok" or "failed"
    reason: str | None
    model: str
    downsample: str | None
    dataset: str
    epochs: int
    recipe: str
    acc: float | None
    loss: float | None
    shift_consistency: float | None
    shift_consistency_circular: float | None
    device: str
    finished: str | None
    poolstride: str


class StudySummary(TypedDict, total=False):
    """``summary.json`` (``poolstride.summary/1``): the study record, per-variant rows and every run's result."""

    schema: str
    study: dict[str, Any]
    complete: bool
    runs_done: int
    runs_total: int
    peak_rss_mb_max: float | None
    variants: list[dict[str, Any]]
    runs: list[dict[str, Any]]
    updated: str


RESULT_FILE = "result.json"  # in a run directory; its presence means the run is done
RUN_FIELDS: tuple[str, ...] = tuple(RunResult.__annotations__)


class RunFileError(ResultFileError):
    """A run's ``result.json`` that exists but cannot be read."""


def write_result(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """The one writer of a run's ``result.json`` (atomic). A record that lacks a :class:`RunResult` field or has
    another schema is a bug in the caller: refused before anything is written."""
    missing = [k for k in RUN_FIELDS if k not in record]
    if missing or record.get("schema") != schema.RUN:
        raise ValueError(f"not a {schema.RUN} record: schema {record.get('schema')!r}, missing {missing}")
    write_json(Path(run_dir) / RESULT_FILE, record)


def read_result(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``result.json``; None when the run has not finished. A corrupted one is a :class:`RunFileError`
    that says how to re-run the run."""
    p = Path(run_dir) / RESULT_FILE
    if not p.exists():
        return None
    try:
        return dict(read_json(p, "run result"))
    except ResultFileError as e:
        raise RunFileError(f"{p} is corrupted ({e.detail}); move it away to re-run this run", path=p) from None


class _Slugged(Protocol):
    @property
    def slug(self) -> str: ...


def run_dir_of(study_dir: str | Path, variant: _Slugged | Mapping[str, Any], seed: int) -> Path:
    """``<study>/runs/<variant slug>/seed<k>``: where the run of ``variant`` (a Variant or its study.json
    record) and ``seed`` lives."""
    slug = variant["slug"] if isinstance(variant, Mapping) else variant.slug
    return Path(study_dir) / "runs" / slug / f"seed{seed}"


def read_study(study_dir: str | Path, *, require_schema: bool = True) -> dict[str, Any]:
    """The record of ``study_dir/study.json`` (``poolstride.study/1``). Raises :class:`StudyFileError` when it is
    missing, unreadable, not a JSON object or of another schema (``require_schema=False``: a record without a
    ``schema`` field, e.g. written by hand, is accepted; another schema never is)."""
    path = Path(study_dir) / "study.json"
    try:
        meta = read_json(path, "study.json")
    except ResultFileError as e:
        err = StudyFileError(str(e), path=path, detail=e.detail, missing=e.missing)
        err.kind = "missing" if e.missing else "unreadable"
        raise err from None
    if not isinstance(meta, dict) or meta.get("schema", None if require_schema else schema.STUDY) != schema.STUDY:
        got = meta.get("schema") if isinstance(meta, dict) else type(meta).__name__
        detail = f"schema {got!r}, expected {schema.STUDY!r}"
        err = StudyFileError(f"{path} is not a poolstride study ({detail})", path=path, detail=detail)
        err.kind = "schema"
        raise err
    return meta


__all__ = [
    "RESULT_FILE",
    "RUN_FIELDS",
    "RunFileError",
    "RunResult",
    "StudyFileError",
    "StudySummary",
    "read_result",
    "read_study",
    "run_dir_of",
    "write_result",
]
