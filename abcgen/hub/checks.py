"""Step 1 of ``abcgen publish``: check the request before anything is assembled -- the repo id, the
evaluation report (written for *this* model, its plots plain files of its folder) and a local target."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from abcgen.atomic import check_output_dir
from abcgen.errors import ConfigError
from abcgen.hub.layout import _REPO_PART, GENERATION_FILE, PLOT_SUFFIXES, REPORT_SCHEMA_VERSION
from abcgen.model_folder import model_fingerprint
from abcgen.versioned import read_versioned


def check_repo_id(repo_id: str) -> str:
    """``owner/name`` with the Hub's characters (letters, digits, ``-``, ``_``, ``.``; no ``--``/``..``)."""
    if not re.fullmatch(f"{_REPO_PART}/{_REPO_PART}", repo_id or "") or "--" in repo_id or ".." in repo_id \
            or repo_id.endswith(".git"):
        raise ConfigError(f"repo id {repo_id!r} is not OWNER/NAME: give your user or organisation name, a slash and "
                          "the repository name (letters, digits, '-', '_', '.'; at most 96 characters each), e.g. "
                          "--repo-id alice/irish-jigs")
    return repo_id



def load_report(report_dir: str | Path, model_dir: str | Path) -> dict[str, Any]:
    """``REPORT_DIR/report.json``, checked: schema, and written for this model (same fingerprint)."""
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        raise ConfigError(f"no evaluation report at {path}: run `abcgen evaluate --model {model_dir} --out "
                          f"{report_dir}` first (or pass --no-eval to publish without one)")
    report = read_versioned(path, "evaluation report", REPORT_SCHEMA_VERSION,
                            fix=f"re-run `abcgen evaluate --model {model_dir} --out {report_dir}`")
    stated = (report.get("model") or {}).get("fingerprint")
    actual = model_fingerprint(model_dir)
    if stated is None:
        raise ConfigError(f"the evaluation report {path} names no model fingerprint (it scores ABC files, not a "
                          f"model): run `abcgen evaluate --model {model_dir}` and publish with that report")
    if stated != actual:
        raise ConfigError(f"the evaluation report {path} was written for another model (fingerprint {stated!r}, "
                          f"model {(report.get('model') or {}).get('path')!r}), not for {model_dir} (fingerprint "
                          f"{actual!r}): re-run `abcgen evaluate --model {model_dir}` and publish with that report")
    report_plots(report, report_dir)
    return report



def report_plots(report: dict[str, Any], report_dir: str | Path) -> list[str]:
    """The plot files ``report.json`` lists, checked: each a plain file name (no folder, no ``..``, not
    absolute) of an allowed kind (``PLOT_SUFFIXES``), a regular file inside ``report_dir`` (not a link out
    of it). The names are joined to the repository's folder, so anything else could write outside it or
    replace a published file (``../model.safetensors``). ``ConfigError`` names the offending entry."""
    path = Path(report_dir) / "report.json"
    plots = report.get("plots", [])
    if not isinstance(plots, list):
        raise ConfigError(f"{path}: 'plots' is {type(plots).__name__}, not a list of file names; re-run abcgen evaluate")
    folder = Path(report_dir).resolve()
    for name in plots:
        plain = (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
                 and "\0" not in name and Path(name).name == name and Path(name).suffix.lower() in PLOT_SUFFIXES)
        if not plain:
            raise ConfigError(f"{path} lists the plot {name!r}: a plot must be a plain file name ending in "
                              f"{' or '.join(PLOT_SUFFIXES)} inside {report_dir} (no folders, '..' or absolute "
                              "paths); re-run abcgen evaluate")
        target = folder / name
        if target.is_symlink() or not target.is_file() or not target.resolve().is_relative_to(folder):
            raise ConfigError(f"{path} lists the plot {name!r}, which is not a file in {report_dir}; "
                              "re-run abcgen evaluate")
    return list(plots)



def _check_local_target(local: Path, *, overwrite: bool) -> None:
    """A local target must be new, empty, or -- with ``overwrite`` -- a repository ``abcgen publish`` wrote
    before; a folder publish did not write is never replaced. Checked before anything is assembled."""
    if local.exists() and (not local.is_dir() or (any(local.iterdir()) and not (local / GENERATION_FILE).is_file())):
        raise ConfigError(f"--local-dir {str(local)!r} exists and was not written by abcgen publish: give a new or "
                          "empty folder (it is replaced only when it holds an earlier published repository)")
    check_output_dir(local, overwrite=overwrite)
