"""Optional dependencies: which extra of ``pyproject.toml`` brings each, and the error when one is missing.

The core install (``pip install abcgen``) covers corpus -> tokenizer -> training -> generation -> publish.
Rendering, evaluation and tensorboard tracking need extras; the code that needs one checks it at its
import site so that a missing package is a one-line error naming the extra to install, not a traceback
from deep inside an import.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

from abcgen.errors import MissingExtraError

# extra name -> (what it is for, the top-level modules it provides). Kept in step with
# [project.optional-dependencies] in pyproject.toml (tests/test_packaging.py checks it).
EXTRAS: dict[str, tuple[str, frozenset[str]]] = {
    "render": ("sheet music rendering (SVG, PNG) and MIDI piano rolls", frozenset({"verovio", "cairosvg", "matplotlib"})),
    "eval": ("abcgen evaluate (metrics, novelty, style classifier, plots)",
             frozenset({"scipy", "rapidfuzz", "matplotlib"})),
    "tracking": ("tensorboard tracking of training runs", frozenset({"tensorboard"})),
    "demo": ("abcgen demo (the Gradio generation page)", frozenset({"gradio"})),
}


def missing_extra_message(module: str, extra: str) -> str:
    """The one-line message for a missing optional module: what needs it and the pip line that installs it."""
    purpose = EXTRAS[extra][0] if extra in EXTRAS else f"the {extra!r} extra"
    return (f"the Python package {module!r} is not installed; {purpose} needs it: "
            f"pip install 'abcgen[{extra}]'")


def require(module: str, *, extra: str) -> None:
    """Raise ``MissingExtraError`` naming ``extra`` unless ``module`` can be imported (nothing is imported)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; declared extras: {', '.join(sorted(EXTRAS))}")
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(missing_extra_message(module, extra), name=module)


@contextmanager
def needs_extra(extra: str) -> Iterator[None]:
    """Around module-level imports of an extra's packages: a missing one becomes ``MissingExtraError``.

    Only a missing top-level module of *that* extra is translated; any other import error propagates
    unchanged, so a broken install is not disguised as a missing extra.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; declared extras: {', '.join(sorted(EXTRAS))}")
    try:
        yield
    except ModuleNotFoundError as exc:
        root = (exc.name or "").partition(".")[0]
        if root not in EXTRAS[extra][1]:
            raise
        raise MissingExtraError(missing_extra_message(root, extra), name=root) from exc
