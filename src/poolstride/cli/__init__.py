"""The ``poolstride`` command line: thin wrappers over the Python API, printed with rich.

Each subcommand lives in its own module and registers itself on :data:`app`. User errors become one line on
stderr and exit status 2, in one place (:func:`main`): :class:`~poolstride.errors.PoolstrideError` (the commands
check what the user typed at the source), click's usage errors, an OSError on a path given on the command line, an
ImportError of a missing or broken optional package. Anything else is a bug: its traceback and a line asking to
report it, exit status 1.
"""

from __future__ import annotations

import errno
import io
import os
import shlex
import signal
import sys
import traceback

import typer

from .. import __version__
from ..errors import PoolstrideError
from ..extras import INSTALL_FIX, first_line
from ..study import provenance
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
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=argv, prog_name="poolstride", standalone_mode=False)
        if isinstance(rv, int) and rv:  # typer turns Ctrl-C into a returned exit code (130), not an exception
            return _interrupted(argv) if rv == 130 else rv
    except PoolstrideError as e:
        return _user_error(first_line(e, None))  # a blank message names the error's type
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt) as e:
        if isinstance(e.__cause__, EOFError):  # click turns an EOFError (a truncated file read) into Abort: not Ctrl-C
            return _bug(e.__cause__, args)
        return _interrupted(argv)
    except Exception as e:
        # click usage errors (typer vendors click, so match by interface, not by class)
        code = getattr(e, "exit_code", None)
        if hasattr(e, "show") and isinstance(code, int):
            _show_usage_error(e)
            return code
        msg = _known_user_error(e, args)
        if msg is not None:
            return _user_error(msg)
        return _bug(e, args)
    return 0


def _user_error(msg: str) -> int:
    """One line on stderr, exit status 2. Only the first line: torch.fx and friends append context lines to
    exceptions raised inside a traced forward."""
    first = (msg.strip().splitlines() or ["error"])[0]
    err_console.print(f"error: {first}", markup=False, highlight=False, soft_wrap=True)
    return 2


def _bug(e: BaseException, args: list[str]) -> int:
    """Not a user error: the traceback, then one line saying it is poolstride's to fix. Exit status 1."""
    traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    err_console.print(
        "this is a bug in poolstride, not in your input; please report it with the command line "
        f"({shlex.join(['poolstride', *args])}) and the traceback above",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return 1


def _show_usage_error(e: Exception) -> None:
    """click's usage error (usage line, hint, message) without its blank line: at most 3 lines; the help page
    that `poolstride` alone prints is shown as it is."""
    if type(e).__name__ == "NoArgsIsHelpError":
        e.show()  # type: ignore[attr-defined]
        return
    buf = io.StringIO()
    e.show(file=buf)  # type: ignore[attr-defined]
    lines = [line for line in buf.getvalue().splitlines() if line.strip()]
    sys.stderr.write("".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------- user errors that are not ours to raise
# Exceptions from outside poolstride that are the user's to fix: mapped here, in one place, to one line and exit 2.
# Everything else that escapes a command is a bug (traceback + "please report").

# An OSError with no file name that is about the machine, not about poolstride.
_ENV_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _known_user_error(e: BaseException, args: list[str]) -> str | None:
    """The one-line message for an exception that is a user (or installation) error, else None."""
    if isinstance(e, ImportError):
        top = (e.name or "").split(".")[0]
        if top in INSTALL_FIX:
            missing = isinstance(e, ModuleNotFoundError) and e.name == top
            what = "is not installed" if missing else f"is installed but does not import ({first_line(e, None)})"
            return f"the package {top} {what}; fix: {INSTALL_FIX[top]}"
        return None
    if isinstance(e, OSError):
        reason = e.strerror or first_line(e, None)
        for name in (e.filename, e.filename2):
            if name is not None and _given_path(os.fsdecode(name), args):
                return f"{os.fsdecode(name)}: {reason}"
        if e.errno in _ENV_ERRNOS:
            return reason
    return None


def _given_path(path: str, args: list[str]) -> bool:
    """Whether ``path`` is a path on the command line, inside one, or one of its parents (mkdir of a parent
    fails when a parent of --out is a file). Values count whole or after '=' (-o key=PATH) and ':' (npz:PATH)."""
    target = os.path.abspath(path)
    for arg in args:
        for value in {arg, arg.partition("=")[2], arg.partition(":")[2]}:
            if not value or value.startswith("-"):
                continue
            given = os.path.abspath(value)
            if target == given or target.startswith(given + os.sep) or given.startswith(target + os.sep):
                return True
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
