"""Shared test setup."""

from __future__ import annotations

import os
import re
import types

import pytest
import torch

# ------------------------------------------------------------------------------------------ the `vision` marker
# Tests that need torchvision or timm get the `vision` marker, so `make test-vision` (its own venv, see the Makefile)
# runs exactly them with `pytest -m vision`. A test is one when
#   - it is marked @pytest.mark.vision, or
#   - its file's name ends with _vision.py or _torchvision.py, or
#   - its module holds torchvision/timm at top level (e.g. `tvm = pytest.importorskip("torchvision.models")`), or
#   - its function names torchvision/timm (e.g. `pytest.importorskip("timm")`, `import torchvision`).
# Elsewhere (`make test`) these tests skip as before, for want of the packages.
VISION_PACKAGES = ("torchvision", "timm")
_VISION_NAMES = {"torchvision", "torchvision.models", "timm"}

# With POOLSTRIDE_REQUIRE_VISION=1 (set by `make test-vision`) a skip because torchvision, timm or the ONNX packages
# cannot be imported is a failure: that venv has them all, so such a skip means a broken environment.
REQUIRE_VISION = os.environ.get("POOLSTRIDE_REQUIRE_VISION", "") not in ("", "0")
_MISSING = re.compile(r"could not import '(torchvision|timm|onnx|onnxruntime)\b")


def _needs_vision(item: pytest.Item) -> bool:
    if item.get_closest_marker("vision") or item.path.name.endswith(("_vision.py", "_torchvision.py")):
        return True
    module = getattr(item, "module", None)
    if module is not None and any(
        isinstance(v, types.ModuleType) and v.__name__.split(".")[0] in VISION_PACKAGES for v in vars(module).values()
    ):
        return True
    code = getattr(getattr(item, "function", None), "__code__", None)
    return code is not None and bool(_VISION_NAMES & {*code.co_names, *code.co_consts})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _needs_vision(item):
            item.add_marker(pytest.mark.vision)


def _skip_reason(report) -> str:
    return report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else ""


def _fail_missing(report) -> None:
    reason = _skip_reason(report)
    if REQUIRE_VISION and _MISSING.search(reason):
        report.outcome = "failed"
        report.longrepr = f"POOLSTRIDE_REQUIRE_VISION=1 turns this skip into a failure: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_missing(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):  # a module-level importorskip skips the whole file
    outcome = yield
    _fail_missing(outcome.get_result())


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread for the whole suite: the test inputs are tiny, and on a small shared CI machine
    2+ threads are several times slower (threads wait for each other at every barrier)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
