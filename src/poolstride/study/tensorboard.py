"""Optional TensorBoard logging (the ``tensorboard`` extra): one event directory per run inside the study.

``compare(..., tensorboard=True)`` (``--tensorboard``) writes ``runs/<variant>/seed<k>/tensorboard/``: per epoch
the training loss and accuracy, the test loss and accuracy and the learning rate; at the end of a run the
shift-consistencies. ``tensorboard --logdir STUDY_DIR/runs`` shows every run of the study side by side.
``metrics.jsonl`` and ``summary.csv`` are written as always; this is an extra view, not a replacement.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..extras import import_optional


def _writer_class() -> Any:
    import_optional("tensorboard", "--tensorboard")  # missing or broken: one line that says how to fix it
    return import_optional("torch.utils.tensorboard", "--tensorboard").SummaryWriter


class TensorBoardLogger:
    """A study callback that mirrors each run's metrics into TensorBoard and forwards every event to ``inner``."""

    def __init__(self, inner: Callable[..., None] | None = None) -> None:
        self.cls = _writer_class()  # fail before any training when the package is missing
        self.inner = inner
        self.writers: dict[Any, Any] = {}
        self.current: Any = None

    def __call__(self, event: str, **kw: Any) -> None:
        key = kw.get("run") or self.current
        if event == "run_start":
            key = kw.get("run") or (kw["variant"], kw["seed"])
            self.current = key
            self.writers[key] = self.cls(log_dir=str(Path(kw["run_dir"]) / "tensorboard"))
        elif event == "epoch" and key in self.writers:
            w, ep = self.writers[key], int(kw["epoch"])
            for tag, name in (("loss/train", "train_loss"), ("accuracy/train", "train_acc"), ("loss/test", "test_loss"),
                              ("accuracy/test", "test_acc"), ("lr", "lr")):  # fmt: skip
                if kw.get(name) is not None:
                    w.add_scalar(tag, float(kw[name]), ep)
            w.flush()
        elif event == "end" and key in self.writers:
            w, r = self.writers.pop(key), kw["result"]
            step = len(r.get("history") or [])
            for tag, name in (("shift_consistency/reflect", "shift_consistency"),
                              ("shift_consistency/circular", "shift_consistency_circular")):  # fmt: skip
                if r.get(name) is not None:
                    w.add_scalar(tag, float(r[name]), step)
            w.close()
        if self.inner is not None:
            self.inner(event, **kw)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()


__all__ = ["TensorBoardLogger"]
