"""The optional extras, in one place: what repairs each missing package, and the one importer of them.

poolstride's core needs torch, numpy, scipy, matplotlib, rich, typer and scikit-image. The model zoos
(torchvision, timm), ONNX export, TensorBoard logging and Slurm launching are extras
(``pip install 'poolstride[vision]'`` ...). Every import of an extra goes through :func:`import_optional`, so a
missing or broken install is one line that says how to fix it, never a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import PoolstrideError

# An ImportError of these top-level packages is a missing or broken install: what repairs it.
INSTALL_FIX = {
    "torchvision": "pip install torchvision (the build matching your torch) or pip install 'poolstride[vision]'",
    "timm": "pip install timm, or pip install 'poolstride[timm]'",
    "onnx": "pip install 'poolstride[onnx]'",
    "onnxruntime": "pip install 'poolstride[onnx]'",
    "onnxscript": "pip install 'poolstride[onnx]'",
    "submitit": "pip install 'poolstride[slurm]'",
    "tensorboard": "pip install 'poolstride[tensorboard]'",
    "torch": "pip install --force-reinstall 'torch>=2.1,<2.15'",
    "numpy": "pip install --force-reinstall numpy",
    "scipy": "pip install --force-reinstall scipy",
    "matplotlib": "pip install --force-reinstall matplotlib",
    "skimage": "pip install --force-reinstall scikit-image",
    "PIL": "pip install --force-reinstall pillow",
    "rich": "pip install --force-reinstall rich",
}


def install_fix(package: str) -> str:
    """The command that installs (or repairs) ``package``."""
    return INSTALL_FIX.get(package, f"pip install {package}")


def first_line(e: BaseException, limit: int | None = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most ``limit`` characters
    (None: all of it)."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def import_optional(module: str, what: str, error: type[PoolstrideError] = PoolstrideError) -> ModuleType:
    """Import ``module`` of an optional package; a missing or broken install raises ``error`` with one line
    that names ``what`` needed it, the package, and how to install or repair it."""
    package = module.split(".")[0]
    fix = install_fix(package)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == package:
            raise error(f"{what}: {package} is not installed; install it: {fix}") from None
        reason = f"{type(e).__name__}: {first_line(e)}"
    except (ImportError, RuntimeError, AttributeError, OSError) as e:
        # a torchvision built for another torch fails at import with "RuntimeError: operator torchvision::nms
        # does not exist"; a half-removed package with ImportError or AttributeError
        reason = f"{type(e).__name__}: {first_line(e)}"
    import torch

    repair = fix if "--force-reinstall" in fix else fix.replace("pip install", "pip install --force-reinstall", 1)
    raise error(
        f"{what}: {package} is installed but broken ({reason}); reinstall it for torch {torch.__version__}: {repair}"
    ) from None
