"""Packaging: a wheel install (``pip install .``, not ``-e``) runs the commands that read package data, the
optional extras are declared where the code asks for them, and a missing extra is a one-line error naming it.

The wheel test is offline and quick: the wheel is built from a copy of the sources with the dev venv's
setuptools (no build isolation), installed without dependencies into a bare ``python -m venv``, and the
dev venv's site-packages is made visible to that venv through a ``.pth`` file for the dependencies only —
the commands run from a folder outside the checkout, and the test asserts ``abcgen`` is imported from the
new venv, not from the checkout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
from pathlib import Path

import pytest
from test_publish import REPO_ID, _finish_model_folder, _write_report
from test_tokenizer import _embedded_tunes, _save_corpus
from tiny_models import tiny_base_tokenizer, tiny_music_model_folder

from abcgen._extras import EXTRAS
from abcgen.errors import MissingExtraError, ToolNotFoundError

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
BOUNDED = ("transformers", "huggingface_hub", "peft", "accelerate")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("-", "_")


# --- the declared dependencies ------------------------------------------------------------------------------

def test_fast_moving_dependencies_are_bounded_at_their_next_major() -> None:
    core = {_name(r): r for r in PYPROJECT["dependencies"]}
    for name in BOUNDED:
        upper = re.search(r"<\s*(\d+)(?![.\d])", core[name])
        assert upper, f"{core[name]!r} has no upper bound at a major version"
        from importlib.metadata import version

        installed = int(version(name).split(".")[0])
        assert int(upper.group(1)) == installed + 1, f"{core[name]!r}: installed major is {installed}"


def test_each_extra_declares_the_modules_the_code_requires_and_core_has_none_of_them() -> None:
    extras = PYPROJECT["optional-dependencies"]
    core = {_name(r) for r in PYPROJECT["dependencies"]}
    for extra, (_, modules) in EXTRAS.items():
        assert {_name(r) for r in extras[extra]} == set(modules), extra
        assert not core & set(modules), f"{extra} packages are also core: {core & set(modules)}"
    everything = {e for r in extras["all"] for e in re.findall(r"\[(.*)\]", r)[0].split(",")}
    assert set(EXTRAS) <= everything and "all" in extras["dev"][0]


# A fresh interpreter in which the optional packages cannot be imported (as if the extras were not
# installed): every core module must import; the evaluation modules must fail with the extra's name.
_WITHOUT_EXTRAS = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    blocked = sys.argv[1].split(",")
    for name in blocked:
        sys.modules[name] = None  # import raises ModuleNotFoundError; find_spec raises ValueError
    import importlib.util
    _find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name.partition(".")[0] in blocked else _find_spec(name, *a)
    import abcgen
    from abcgen.errors import MissingExtraError
    result = {}
    for info in pkgutil.walk_packages(abcgen.__path__, "abcgen."):
        if info.name.endswith("__main__"):  # runs the command line
            continue
        try:
            importlib.import_module(info.name)
            result[info.name] = "ok"
        except MissingExtraError as exc:
            result[info.name] = "missing: " + str(exc)
        except Exception as exc:
            result[info.name] = f"error: {type(exc).__name__}: {exc}"
    try:
        from abcgen.render import render_abc
        render_abc("X:1\\nM:2/4\\nL:1/8\\nK:D\\n|:dA FA:|\\n", sys.argv[2], ["svg"])
    except MissingExtraError as exc:
        result["render svg"] = "missing: " + str(exc)
    print(json.dumps(result))
""")


@pytest.mark.slow
def test_core_modules_import_without_any_extra_and_evaluation_names_its_extra(tmp_path: Path) -> None:
    blocked = sorted(set().union(*(modules for _, modules in EXTRAS.values())))
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    run = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, ",".join(blocked), str(tmp_path / "t")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    errors = {name: status for name, status in result.items() if status.startswith("error")}
    assert not errors, errors
    missing = {name: status for name, status in result.items() if status.startswith("missing")}
    # evaluation's metrics need scipy/rapidfuzz: the error is one line and names the extra to install
    assert "abcgen.evaluation.metrics" in missing
    for name, status in missing.items():
        assert "\n" not in status and "pip install 'abcgen[" in status, (name, status)
        assert name.startswith("abcgen.evaluation.") or name == "render svg", f"{name} needs an extra: {status}"
    assert "pip install 'abcgen[eval]'" in missing["abcgen.evaluation.metrics"]
    assert "pip install 'abcgen[render]'" in missing["render svg"]
    assert result["abcgen.cli"] == result["abcgen.hub"] == result["abcgen.generation.pipeline"] == "ok"


def test_missing_extra_error_is_an_import_error_and_a_tool_error() -> None:
    from abcgen._extras import needs_extra, require

    with pytest.raises(MissingExtraError, match=r"'no_such_pkg_x'.* pip install 'abcgen\[render\]'") as info:
        require("no_such_pkg_x", extra="render")
    assert isinstance(info.value, ImportError) and isinstance(info.value, ToolNotFoundError)
    # a module outside the extra is not disguised as a missing extra
    with pytest.raises(ModuleNotFoundError) as other, needs_extra("eval"):
        import no_such_pkg_y  # noqa: F401
    assert not isinstance(other.value, MissingExtraError)


# --- a wheel install outside the checkout ---------------------------------------------------------------------

def _copy_sources(dest: Path) -> Path:
    """What a build from a clean clone sees: pyproject, README, MANIFEST.in and the package (no caches)."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "MANIFEST.in"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "abcgen", dest / "abcgen", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare venv holding abcgen installed from its wheel; the dev venv's packages serve as dependencies."""
    work = tmp_path_factory.mktemp("packaging")
    src = _copy_sources(work / "src")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w",
                            str(work / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("abcgen-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # Installed while the new venv sees nothing else, so pip finds no other abcgen to replace.
    installed = subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                               capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies: the dev venv's site-packages as a plain path. Its own .pth files (the editable
    # abcgen's finder among them) are not processed from a path added this way, and the new venv's
    # site-packages comes first.
    Path(site, "abcgen_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    return venv


def _run(venv: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONNOUSERSITE="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_wheel_install_imports_abcgen_from_the_venv_with_its_package_data(wheel_venv: Path, tmp_path: Path) -> None:
    probe = _run(wheel_venv, [str(wheel_venv / "bin" / "python"), "-c",
                              "import abcgen, json; from abcgen.hub import CARD_TEMPLATE; "
                              "from abcgen.tokenization.units import DEFAULT_SPEC_PATH; "
                              "print(json.dumps([abcgen.__file__, str(CARD_TEMPLATE), str(DEFAULT_SPEC_PATH)]))"],
                 tmp_path)
    assert probe.returncode == 0, probe.stderr[-2000:]
    package, card, spec = (Path(p) for p in json.loads(probe.stdout.strip().splitlines()[-1]))
    assert package.is_relative_to(wheel_venv) and not package.is_relative_to(ROOT), package
    assert card.is_relative_to(wheel_venv) and card.is_file()
    assert spec.is_relative_to(wheel_venv) and spec.is_file()


@pytest.mark.slow
def test_wheel_install_builds_the_shipped_tokenizer_and_publishes_a_local_folder(wheel_venv: Path,
                                                                                tmp_path: Path) -> None:
    from abcgen.tokenization.units import load_default_spec

    outside = tmp_path / "elsewhere"  # the working directory: no abcgen/ beside it to import
    outside.mkdir()
    abcgen = str(wheel_venv / "bin" / "abcgen")

    data, base = tmp_path / "corpus", tmp_path / "base"
    _save_corpus(data, _embedded_tunes(320))
    tiny_base_tokenizer(base)
    built = _run(wheel_venv, [abcgen, "tokenizer", "build", "--base", str(base), "--data", str(data),
                              "--out", str(tmp_path / "tok"), "--units", "shipped"], outside)
    assert built.returncode == 0, built.stderr[-3000:]
    spec = json.loads((tmp_path / "tok" / "abc_units.json").read_text(encoding="utf-8"))
    assert len(spec["units"]) == len(load_default_spec().units)

    corpus = tmp_path / "corpus-report"
    corpus.mkdir()
    (corpus / "report.json").write_text(json.dumps({"config": {"sources": ["music21:oneills1850"]}}),
                                        encoding="utf-8")
    model = tiny_music_model_folder(tmp_path / "model")
    shutil.rmtree(model / "_base")
    _finish_model_folder(model, corpus, method="scratch")
    report = _write_report(tmp_path / "eval", model)
    published = _run(wheel_venv, [abcgen, "publish", "--model", str(model), "--repo-id", REPO_ID,
                                  "--report", str(report), "--local-dir", str(tmp_path / "hub")], outside)
    assert published.returncode == 0, published.stderr[-3000:]
    card = (tmp_path / "hub" / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "pipeline_tag: text-generation" in card and REPO_ID in card
    assert not list(outside.iterdir())  # nothing written into the working directory
