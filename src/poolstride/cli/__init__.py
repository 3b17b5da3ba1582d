"""The ``poolstride`` command line: thin wrappers over the Python API, printed with rich.

Each subcommand lives in its own module and registers itself on :data:`app`. User errors
(:class:`~poolstride.errors.PoolstrideError`) become one line on stderr and exit status 2.
"""

from __future__ import annotations

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


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one stderr line and exit status 2."""
    try:
        app(args=argv, prog_name="poolstride", standalone_mode=False)
    except PoolstrideError as e:
        # one line: torch.fx and friends append context lines to exceptions raised inside a traced forward
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        err_console.print(f"error: {msg}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except typer.Abort:
        err_console.print("aborted", markup=False)
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted; finished work is saved, run the same command again to resume", markup=False)
        return 130
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
