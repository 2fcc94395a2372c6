"""``abcgen demo --model DIR``: a local Gradio page to generate tunes and hear them.

    abcgen demo --model runs/quickstart/lora/final          # http://127.0.0.1:7860/
    abcgen demo --model OWNER/NAME --host 0.0.0.0 --port 7860

Choose key and mode, meter, rhythm, form, number of bars, temperature and seed (and guidance when the
model's pipeline takes it); optionally a melody to continue, typed as ABC bars or uploaded as an ABC or
MIDI file (MIDI is read with ``midi2abc`` from Debian's ``abcmidi``; its first bars are kept). The page
shows the sheet music (verovio), plays the audio (fluidsynth with the General MIDI soundfont), offers
the ABC, MIDI and WAV for download, and lists the per-bar check of the tune (``abcgen.notation``).

**Offline by construction.** Gradio's analytics and version check are switched off
(``GRADIO_ANALYTICS_ENABLED=False``, set before Gradio is imported), no share link is made, server-side
rendering (which needs Node) is off, and the theme uses system fonts: every file the page loads comes
from the installed ``gradio`` package or from this server.

**As a Hugging Face Space**, an ``app.py`` of two lines runs the same page on a published model::

    from abcgen.demo import build_demo, launch_options
    build_demo(".").launch(**launch_options(host="0.0.0.0", port=7860))

Needs the ``demo`` extra (``pip install 'abcgen[demo,render]'``).
"""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from abcgen._extras import needs_extra
from abcgen.errors import AbcgenError, ConfigError, ToolNotFoundError
from abcgen.notation import events as ev
from abcgen.notation.tune import normalise_tune
from abcgen.render import check_render_request, render_abc

log = logging.getLogger(__name__)

DEFAULT_PORT = 7860
PROMPT_BARS = 4  # bars of an uploaded melody kept as the opening to continue
_ANY = "(any)"
_TITLE = "abcgen: generate a tune"


def _gradio():  # noqa: ANN202 -- the gradio module
    """Import Gradio with analytics off (the variable must be set before the import)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

    with needs_extra("demo"):
        import gradio as gr
    return gr


def _choices(vocabulary: Any, name: str) -> list[str]:
    values = vocabulary.values.get(name, {})
    return [v for v, _ in sorted(values.items(), key=lambda kv: -kv[1]) if v != "other"]


def key_choices(vocabulary: Any) -> tuple[list[str], list[str]]:
    """(tonics, modes) of the keys the model was trained on (``"A dorian"`` -> ``"A"``, ``"dorian"``)."""
    tonics, modes = [], []
    for key in _choices(vocabulary, "key"):
        tonic, _, mode = key.partition(" ")
        tonics += [tonic] if tonic not in tonics else []
        modes += [mode or "major"] if (mode or "major") not in modes else []
    return tonics or ["C"], modes or ["major"]


def midi_to_abc(path: str | Path) -> str:
    """An uploaded MIDI file as ABC, through ``midi2abc`` (Debian ``abcmidi``)."""
    tool = shutil.which("midi2abc")
    if tool is None:
        raise ToolNotFoundError("midi2abc not found on PATH; install it with: apt-get install abcmidi")
    done = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 or "K:" not in done.stdout:
        raise ConfigError(f"midi2abc could not read {Path(path).name!r}: {(done.stderr or done.stdout)[-300:]}")
    return done.stdout


def opening_bars(abc: str, bars: int = PROMPT_BARS) -> str:
    """The first ``bars`` bar-line-closed bars of a tune's body (a whole tune or just bars of ABC)."""
    text = abc if "K:" in abc else f"X:1\nK:C\n{abc}"
    events = normalise_tune(text).events()
    out, closed = "", 0
    for event in events:
        out += event.text
        if event.kind == ev.BAR and out.strip(" |:"):
            closed += 1
            if closed == bars:
                break
    return out.strip()


def read_melody(typed: str | None, upload: str | None) -> str | None:
    """The melody to continue: an uploaded ``.mid``/``.abc`` file (its first bars), else the typed bars."""
    if upload:
        path = Path(upload)
        if path.suffix.lower() in (".mid", ".midi"):
            return opening_bars(midi_to_abc(path))
        if path.suffix.lower() == ".abc":
            return opening_bars(path.read_text(encoding="utf-8", errors="replace"))
        raise ConfigError(f"uploaded file {path.name!r}: give a .mid, .midi or .abc file")
    return typed.strip() if typed and typed.strip() else None


def _accepts(pipe: Any, name: str) -> bool:
    return name in inspect.signature(pipe._sanitize_parameters).parameters


def generate_one(pipe: Any, work: Path, *, tonic: str, mode: str, meter: str, rhythm: str, form: str, bars: int,
                 temperature: float, seed: int, melody: str | None, guidance: float | None = None,
                 soundfont: str | None = None) -> dict[str, Any]:
    """One tune from the pipeline, rendered to ``work``: {"abc", "valid", "problems", "bars", "files"}."""
    call: dict[str, Any] = {"key": f"{tonic} {mode}", "meter": meter, "bars": int(bars),
                            "temperature": float(temperature), "seed": int(seed), "num_return_sequences": 1}
    if rhythm and rhythm != _ANY:
        call["rhythm"] = rhythm
    if form and form.strip():
        call["form"] = form.strip()
    if guidance is not None and _accepts(pipe, "guidance"):
        call["guidance"] = float(guidance)
    tune = pipe(melody, **call)[0]
    out = Path(tempfile.mkdtemp(prefix="tune-", dir=work))
    (out / "tune.abc").write_text(tune["abc"], encoding="utf-8")
    files = {"abc": out / "tune.abc"}
    files.update(render_abc(tune["abc"], out / "tune", ("mid", "wav", "png"), soundfont=soundfont))
    return {**{k: tune[k] for k in ("abc", "valid", "problems", "bars")}, "files": files}


def bar_rows(bars: list[dict[str, Any]]) -> list[list[Any]]:
    """The per-bar check as table rows: bar, length, meter, "ok"/"wrong length"."""
    return [[b["index"], b["duration"], b["meter"], "ok" if b["ok"] else "wrong length"] for b in bars]


def build_demo(model: str | Path, *, soundfont: str | None = None, work_dir: str | Path | None = None) -> Any:
    """The Gradio ``Blocks`` of the demo for a model folder or hub id (loaded once, here)."""
    gr = _gradio()
    from abcgen.generation.pipeline import load_pipeline

    check_render_request(("mid", "wav", "png"), soundfont)
    pipe = load_pipeline(model)
    work = Path(work_dir or tempfile.mkdtemp(prefix="abcgen-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    tonics, modes = key_choices(pipe.vocabulary)
    meters = _choices(pipe.vocabulary, "meter") or ["4/4"]
    rhythms = [_ANY, *_choices(pipe.vocabulary, "rhythm")]
    with_guidance = _accepts(pipe, "guidance")

    def run(tonic: str, mode: str, meter: str, rhythm: str, form: str, bars: float, temperature: float,
            seed: float, guidance: float | None, typed: str, upload: str | None):  # noqa: ANN202
        try:
            melody = read_melody(typed, upload)
            result = generate_one(pipe, work, tonic=tonic, mode=mode, meter=meter, rhythm=rhythm, form=form,
                                  bars=int(bars), temperature=temperature, seed=int(seed), melody=melody,
                                  guidance=guidance if with_guidance else None, soundfont=soundfont)
        except AbcgenError as exc:
            raise gr.Error(" ".join(str(exc).split())) from exc
        files = result["files"]
        status = ("**Every bar checks out** (per-bar check below)." if result["valid"] else
                  "**The check found problems:** " + "; ".join(result["problems"][:5]))
        return (str(files["png"]), str(files["wav"]), [str(files[f]) for f in ("abc", "mid", "wav")],
                result["abc"], status, bar_rows(result["bars"]))

    with gr.Blocks(title=_TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"# {_TITLE}\nChoose the tune's settings and press **Generate**. Model: `{model}`")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=280):
                with gr.Row():
                    tonic = gr.Dropdown(tonics, value=tonics[0], label="Key", elem_id="tonic")
                    mode = gr.Dropdown(modes, value=modes[0], label="Mode", elem_id="mode")
                with gr.Row():
                    meter = gr.Dropdown(meters, value=meters[0], label="Meter", elem_id="meter")
                    rhythm = gr.Dropdown(rhythms, value=rhythms[1] if len(rhythms) > 1 else _ANY, label="Rhythm",
                                         elem_id="rhythm")
                form = gr.Textbox(label="Form (optional)", placeholder="e.g. AABB", elem_id="form")
                bars = gr.Slider(4, 64, value=8, step=1, label="Bars", elem_id="bars")
                with gr.Accordion("Sampling", open=False):
                    temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    guidance = gr.Slider(1.0, 5.0, value=1.5, step=0.1, label="Guidance", visible=with_guidance)
                with gr.Accordion("Melody to continue (optional)", open=False):
                    typed = gr.Textbox(label="Opening bars in ABC", placeholder="e.g. dAF DFA|d2f e2d|", lines=2,
                                       elem_id="melody")
                    upload = gr.File(label="…or upload an ABC or MIDI file", file_types=[".abc", ".mid", ".midi"],
                                     type="filepath")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2, min_width=300):
                status = gr.Markdown(elem_id="status")
                sheet = gr.Image(label="Sheet music", type="filepath", interactive=False, elem_id="sheet",
                                 alt_text="Sheet music of the generated tune", buttons=["download", "fullscreen"])
                audio = gr.Audio(label="Listen", type="filepath", interactive=False, elem_id="audio",
                                 buttons=["download"])  # no "share" (it posts to the Hub)
                downloads = gr.File(label="Download ABC, MIDI, WAV", file_count="multiple", interactive=False,
                                    elem_id="downloads")
                abc = gr.Code(label="ABC", interactive=False, elem_id="abc")
                check = gr.Dataframe(headers=["bar", "length", "meter", "check"], label="Per-bar check",
                                     interactive=False, elem_id="bars-check")
        button.click(run, [tonic, mode, meter, rhythm, form, bars, temperature, seed, guidance, typed, upload],
                     [sheet, audio, downloads, abc, status, check], api_name="generate")
    demo.abcgen_work_dir = work
    return demo


def launch_options(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> dict[str, Any]:
    """``Blocks.launch`` arguments that keep the page offline (see the module docstring)."""
    gr = _gradio()
    font = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    theme = gr.themes.Default(font=font, font_mono=["ui-monospace", "DejaVu Sans Mono", "monospace"])
    return {"server_name": host, "server_port": port, "share": False, "ssr_mode": False, "pwa": False,
            "mcp_server": False, "theme": theme, "footer_links": [], "quiet": True}


def run_demo(model: str | Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
             soundfont: str | None = None) -> None:
    """``abcgen demo``: build the page and serve it until interrupted."""
    demo = build_demo(model, soundfont=soundfont)
    options = launch_options(host, port)
    print(f"abcgen demo of {model} at http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    try:
        demo.launch(**options)
    finally:
        shutil.rmtree(demo.abcgen_work_dir, ignore_errors=True)
