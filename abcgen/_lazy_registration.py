"""Register abcgen with transformers when transformers' own modules are imported, not before.

``import abcgen`` must make ``pipeline("abc-generation", ...)``, ``AutoConfig.from_pretrained(folder)`` and
``AutoModelForCausalLM.from_pretrained(folder)`` work for abcgen's own model families (the LSTM's
``abcgen_lstm``, the VAE's ``abcgen_vae``), but importing transformers' pipelines and modeling code (and
torch) costs seconds that every ``abcgen`` command and data worker would pay. So each registration waits
for the transformers module it needs:

* ``transformers.models.auto.configuration_auto`` -> the LSTM's and VAE's configs with ``AutoConfig`` (cheap: the
  config module needs only ``transformers.configuration_utils``, loaded by then). The model class is
  registered with ``AutoModelForCausalLM`` when the first ``MusicLSTMConfig`` is made (which
  ``from_pretrained`` does before it looks the model class up; see ``abcgen.models.lstm_config``), not on
  an import: ``AutoTokenizer`` imports transformers' auto-model module too, and tokenizer-only code (data
  workers) must not pay for the model module's ``transformers.modeling_utils`` (~2 s);
* ``transformers.pipelines`` -> the ``abc-generation`` task.

A module already imported (``from transformers import AutoModelForCausalLM`` before ``import abcgen``) is
registered at once; the others by a one-shot import hook that runs the registration right after the module
is first imported.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Sequence
from types import ModuleType


def _register_pipeline() -> None:
    # Importing the pipeline module registers the task (its last line). When that module is the one whose
    # own ``from transformers import Pipeline`` triggered this hook, it is half-imported: import_module
    # returns it as is, and it registers itself when it finishes.
    importlib.import_module("abcgen.generation.pipeline")  # which imports midi_pipeline (midi-generation) last


def _register_model_configs() -> None:
    from abcgen.models.lstm_config import register_auto_config
    from abcgen.models.vae_config import register_auto_config as register_vae_config

    register_auto_config()
    register_vae_config()


# transformers module -> what to register right after it is imported
_HOOKS: dict[str, Callable[[], None]] = {
    "transformers.models.auto.configuration_auto": _register_model_configs,
    "transformers.pipelines": _register_pipeline,
}


class _RegisterAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds each pending module through the other finders, then runs its hook after executing it."""

    def __init__(self, pending: Sequence[str]) -> None:
        self._pending = set(pending)
        self._loaders: dict[str, importlib.abc.Loader] = {}

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._pending:
            return None
        self._pending.discard(fullname)  # one shot per module
        if not self._pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = None
        for finder in list(sys.meta_path):  # the finders the import system would ask next
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        self._loaders[fullname] = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loaders[spec.name].create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        loader = self._loaders.pop(module.__name__)
        module.__spec__.loader = loader  # type: ignore[union-attr]
        loader.exec_module(module)
        _HOOKS[module.__name__]()


def install() -> None:
    """Register now for the transformers modules already imported; hook the others (once per process)."""
    if any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        return
    pending = []
    for name, register in _HOOKS.items():
        if name in sys.modules:
            register()
        else:
            pending.append(name)
    if pending:
        sys.meta_path.insert(0, _RegisterAfterImport(pending))
