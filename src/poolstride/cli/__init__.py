"""The ``poolstride`` command line: thin wrappers over the Python API, printed with rich.

Each subcommand lives in its own module and registers itself on :data:`app`. User errors
(:class:`~poolstride.errors.PoolstrideError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import shlex
import signal
import sys

import typer

from .. import __version__
from ..errors import PoolstrideError
from .common import app, console, err_console

# Subcommand modules register themselves on `app` when imported; this order is the order in --help.
# isort: off
from . import compare_cmd as _compare_cmd  # noqa: F401,E402  (compare, train)
from . import report_cmd as _report_cmd  # noqa: F401,E402
from . import ops_cmd as _ops_cmd  # noqa: F401,E402
from . import models_cmd as _models_cmd  # noqa: F401,E402
from . import inspect_cmd as _inspect_cmd  # noqa: F401,E402  (inspect, cost, explain, gradflow)
from . import convert_cmd as _convert_cmd  # noqa: F401,E402
from . import reproduce_cmd as _reproduce_cmd  # noqa: F401,E402
from . import alias_cmd as _alias_cmd  # noqa: F401,E402

# isort: on


def _version(value: bool) -> None:
    if value:
        console.print(f"poolstride {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """poolstride: should this layer downsample with pooling or with a strided convolution? Measure it.

    Operators are written in the spec language, e.g. max, avg, lp(p=3), conv(k=3), convpool(k=3,pool=max),
    blur(base=max,size=4), s2d, spectral, softpool, mixed(alpha=0.5), stochastic, diffstride(init=2).
    """


_RESUMABLE = ("compare", "train", "reproduce")
_signal: dict[str, int | None] = {"num": None}


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a scheduler's stop, ``kill``) unwinds like Ctrl-C, so that locks are released and the exit
    status says what happened (143)."""
    _signal["num"] = signum
    raise KeyboardInterrupt


def _interrupted(argv: list[str] | None) -> int:
    sig = _signal["num"] or signal.SIGINT
    args = list(sys.argv[1:] if argv is None else argv)
    name = "SIGTERM" if sig == signal.SIGTERM else "interrupted (SIGINT)"
    if args and args[0] in _RESUMABLE:
        err_console.print(
            f"{name}: finished runs are kept and an interrupted run resumes from its last epoch checkpoint; "
            f"resume with: {shlex.join(['poolstride', *args])}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    else:
        err_console.print(name, markup=False)
    return 128 + int(sig)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one stderr line and exit status 2, Ctrl-C into
    130 and SIGTERM into 143 (with the command that resumes)."""
    _signal["num"] = None
    from ..study import provenance

    provenance.set_cli_args(list(sys.argv[1:] if argv is None else argv))  # recorded as the study's command
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding application): keep its handlers
        previous = None
    try:
        return _main(argv)
    finally:
        provenance.set_cli_args(None)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    try:
        rv = app(args=argv, prog_name="poolstride", standalone_mode=False)
        if isinstance(rv, int) and rv:  # typer turns Ctrl-C into a returned exit code (130), not an exception
            return _interrupted(argv) if rv == 130 else rv
    except PoolstrideError as e:
        # one line: torch.fx and friends append context lines to exceptions raised inside a traced forward
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        return _interrupted(argv)
    except Exception as e:
        # click usage errors (typer vendors click, so match by interface, not by class)
        code = getattr(e, "exit_code", None)
        if hasattr(e, "show") and isinstance(code, int):
            e.show()
            return code
        raise
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
