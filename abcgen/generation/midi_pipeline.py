"""The ``midi-generation`` pipeline: conditions, instruments (and a melody to continue or accompany) in,
MIDI out, from a model trained on REMI (``data.representation: remi``).

    import abcgen
    from transformers import pipeline

    pipe = pipeline("midi-generation", model="runs/remi/final")
    out = pipe(key="D", meter="6/8", rhythm="jig", programs=[0, 32, 40], bars=8, num_return_sequences=2, seed=0)
    out[0]["midi"]          # bytes of a standard MIDI file (mido, pretty_midi and symusic read it)
    out[0]["valid"], out[0]["problems"], out[0]["remi"]
    pipe(melody="X:1\\nM:6/8\\nL:1/8\\nK:D\\nd2e f2g|...", programs=[0, 32])   # accompany a melody (ABC or MIDI)
    pipe(prompt=midi_bytes, bars=16)                                       # continue a piece

How a call works:

1. **Conditions** (the registry's: key, rhythm, ...) are checked against the model's control vocabulary as
   the ``abc-generation`` pipeline checks them and become the same control prefix.
2. **The track list is written by the pipeline**: one ``Program_`` token per requested instrument
   (``RemiPromptFormat.header``). With ``melody=`` the melody's program joins it.
3. **Decoding is constrained** (``abcgen.grammar.remi``): the requested meter in every bar, exactly ``bars``
   bars, requested programs only, pitches in each instrument's range, every note ending by the end, and
   EOS within ``max_new_tokens``. So every output decodes to MIDI. ``constrained=False`` samples freely
   (the output may then not decode: ``valid`` says so).
4. **Continuation** (``prompt=``: MIDI bytes or path, ABC text or REMI text): its REMI events are the start
   of the body, the grammar follows them, and the model writes the bars after them.
   **Accompaniment** (``melody=``): the melody's notes are forced at their bar and position
   (``ForcedNote``); the model writes the other requested tracks around them, bar by bar.
5. Each result is decoded with miditok, written as MIDI and **checked**: it opens with ``mido``, has the
   requested time signature throughout, no note past the last bar, and only the requested programs.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from abcgen.atomic import atomic_output_dir, check_output_dir
from abcgen.errors import AbcgenError, AbcParseError, ConfigError, ConversionError
from abcgen.generation.arguments import check_int, check_real, short
from abcgen.generation.guidance import check_guidance, guided_generate
from abcgen.generation.pipeline import (
    GenerationBudgetError,
    MusicPipeline,
    check_call_arguments,
    condition_labels,
    register_task,
)
from abcgen.generation.sampling import Sample, check_model_path, load_error, position_limit, sampling_state
from abcgen.grammar import AbcLogitsProcessor, BudgetTooSmallError
from abcgen.grammar.remi import (
    ForcedNote,
    RemiConstraint,
    bar_positions,
    nearest_tempo_token,
    time_signature_token,
)
from abcgen.model_folder import model_representation
from abcgen.notation.remi import (
    MELODY_PROGRAM,
    POSITIONS_PER_BEAT,
    abc_to_remi,
    midi_to_remi,
    remi_to_midi_bytes,
)
from abcgen.tokenization.prompt import RemiPromptFormat
from abcgen.tokenization.remi import duration_beats, remi_vocabulary

log = logging.getLogger(__name__)

TASK = "midi-generation"
DEFAULT_BARS = 8
DEFAULT_METER = "4/4"
MAX_BARS = 256
# Generated tokens allowed per requested bar when max_new_tokens is not given: a bar of a melody with bass
# and chords is ~60-120 REMI tokens (4 a note), so 160 rarely binds and keeps a runaway bounded.
TOKENS_PER_BAR = 160


# --- REMI text: reading a prompt or a melody ----------------------------------------------------------------


def remi_of(source: Any, what: str) -> str:
    """REMI text of a prompt or melody: MIDI bytes, a path to a .mid file, ABC text (a tune with ``K:``)
    or REMI text. ``ConfigError`` naming what could not be read."""
    if isinstance(source, bytes | bytearray):
        return midi_to_remi(bytes(source))
    if isinstance(source, os.PathLike) or (isinstance(source, str) and source.lower().endswith((".mid", ".midi"))):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{what}={str(source)!r} is not a file; give MIDI bytes, a .mid path, ABC or REMI text")
        return midi_to_remi(path)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"{what}={short(source)}: give MIDI bytes, a .mid path, ABC text or REMI text")
    text = source.strip()
    if text.split()[0] == "Bar_None":
        return text
    if "K:" in text:
        return abc_to_remi(text if text.startswith("X:") else "X:1\n" + text)
    raise ConfigError(f"{what}={short(source)} is neither ABC (no K: line) nor REMI text (it must start with "
                      "Bar_None); give MIDI bytes, a .mid path, ABC or REMI text")


def remi_bars(text: str) -> int:
    """Bars of REMI text (its ``Bar_None`` tokens)."""
    return sum(token == "Bar_None" for token in text.split())


def remi_meters(text: str) -> list[str]:
    """The distinct meters of REMI text, in order of appearance (``["6/8"]``)."""
    meters: list[str] = []
    for token in text.split():
        if token.startswith("TimeSig_") and token[8:] not in meters:
            meters.append(token[8:])
    return meters


def remi_programs(text: str) -> list[int]:
    """The programs REMI text plays, sorted."""
    return sorted({int(token[8:]) for token in text.split() if token.startswith("Program_")})


def remi_tempo(text: str) -> str | None:
    """The value of the first ``Tempo_`` token (``"122.99"``), or None."""
    return next((token[6:] for token in text.split() if token.startswith("Tempo_")), None)


def first_bars(text: str, bars: int) -> str:
    """The first ``bars`` bars of REMI text; a note still sounding at the cut is shortened to end there (to
    the longest REMI duration that fits)."""
    from abcgen.grammar.remi import bar_positions

    tokens, out, bar, position, positions = text.split(), [], 0, 0, 0
    durations = sorted((duration_beats(t[9:]) * POSITIONS_PER_BEAT, t) for t in remi_vocabulary()
                       if t.startswith("Duration_"))
    for token in tokens:
        if token == "Bar_None":
            bar += 1
            if bar > bars:
                break
        elif token.startswith("TimeSig_"):
            positions = bar_positions(token[8:])
        elif token.startswith("Position_"):
            position = int(token[9:])
        elif token.startswith("Duration_"):
            left = (bars - bar) * positions + positions - position
            if duration_beats(token[9:]) * POSITIONS_PER_BEAT > left:
                token = max((d for d in durations if d[0] <= left), default=durations[0])[1]
        out.append(token)
    return " ".join(out)


def only_programs(text: str, programs: Sequence[int]) -> str:
    """REMI text keeping only the notes of ``programs`` (bars, time signatures, positions, tempo kept): a
    melody taken out of a piece, to accompany it again."""
    tokens, out, i, keep = text.split(), [], 0, {int(p) for p in programs}
    while i < len(tokens):
        if tokens[i].startswith("Program_"):
            if int(tokens[i][8:]) in keep:
                out += tokens[i: i + 4]
            i += 4
            continue
        out.append(tokens[i])
        i += 1
    return " ".join(out)


def forced_notes(text: str, program: int) -> list[ForcedNote]:
    """The notes of ``program`` in REMI text, as notes an accompaniment must keep."""
    notes, bar, position, tokens = [], 0, 0, text.split()
    for i, token in enumerate(tokens):
        if token == "Bar_None":
            bar, position = bar + 1, 0
        elif token.startswith("Position_"):
            position = int(token[9:])
        elif token == f"Program_{program}" and i + 3 < len(tokens):
            pitch, velocity, duration = tokens[i + 1: i + 4]
            notes.append(ForcedNote(bar, position, program, int(pitch[6:]), velocity[9:], duration[9:]))
    return notes


def check_remi_midi(midi: bytes, *, meter: str, bars: int, programs: Sequence[int]) -> list[str]:
    """Problems of a generated MIDI file (empty when it is good): it opens with ``mido`` (an independent
    reader), has notes, the time signature ``meter`` throughout, no note past ``bars`` bars of it, and only
    ``programs``."""
    import mido
    from symusic import Score

    problems: list[str] = []
    try:
        mido.MidiFile(file=io.BytesIO(midi))
        score = Score.from_midi(midi)
    except Exception as exc:  # mido: OSError/EOFError/ValueError; symusic: RuntimeError
        return [f"the MIDI file cannot be read ({type(exc).__name__}: {exc})"]
    notes = [(track.program, note) for track in score.tracks for note in track.notes]
    if not notes:
        return ["no notes"]
    wanted = time_signature_token(meter)[8:]
    signatures = {f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures}
    if signatures != {wanted}:
        problems.append(f"time signatures {sorted(signatures)} instead of {wanted} throughout")
    numerator, denominator = (int(x) for x in wanted.split("/"))
    bar_ticks = Fraction(score.ticks_per_quarter * 4 * numerator, denominator)
    end = max(note.time + note.duration for _, note in notes)
    if end > bars * bar_ticks:
        problems.append(f"a note ends at bar {float(end / bar_ticks) + 1:.2f}, after the {bars} bars asked for")
    extra = sorted({program for program, _ in notes} - set(programs))
    if extra:
        problems.append(f"programs {extra} were not asked for")
    return problems


# --- the pipeline ---------------------------------------------------------------------------------------------


class MidiGenerationPipeline(MusicPipeline):
    """``pipeline("midi-generation", model=...)``; see the module docstring."""

    representation = "remi"
    other_task = "abc-generation"

    def __call__(self, prompt: Any = None, **kwargs: Any) -> list[dict[str, Any]]:  # type: ignore[override]
        """``prompt``: optional opening bars to continue (MIDI bytes or path, ABC or REMI text). Every argument
        is checked before anything is generated (``ConfigError`` naming the value and the valid range)."""
        return super().__call__(prompt if prompt is not None else "", **kwargs)

    def _sanitize_parameters(
        self,
        melody: Any = None,
        melody_program: int | None = None,
        programs: Sequence[int] | None = None,
        bpm: float | None = None,
        num_return_sequences: int = 1,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        constrained: bool = True,
        guidance_scale: float = 1.0,
        **given: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        check_call_arguments(given, ("melody", "melody_program", "programs", "bpm", "guidance_scale"),
                             num_return_sequences=num_return_sequences, temperature=temperature, top_p=top_p,
                             max_new_tokens=max_new_tokens, seed=seed, constrained=constrained, max_bars=MAX_BARS)
        if programs is not None and (isinstance(programs, int | str) or not programs or not all(
                isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 127 for p in programs)):
            raise ConfigError(f"programs={short(programs)}: give a list of General MIDI programs 0..127, e.g. "
                              "[0, 32, 40] (piano chords, bass, violin melody)")
        if melody_program is not None:
            check_int("melody_program", melody_program, 0, 127)
        if bpm is not None:
            check_real("bpm", bpm, "quarter notes a minute, 40 to 250", lambda v: 40 <= v <= 250)
        scale = check_guidance(self.model, guidance_scale)
        conditions = {name: value for name, value in given.items() if value not in (None, "")}
        preprocess = {"conditions": conditions, "melody": melody, "melody_program": melody_program,
                      "programs": list(programs) if programs is not None else None, "bpm": bpm,
                      "max_new_tokens": max_new_tokens}
        forward = {"num_return_sequences": num_return_sequences, "temperature": temperature, "top_p": top_p,
                   "seed": seed, "constrained": constrained, "guidance_scale": scale}
        return preprocess, forward, {}

    def preprocess(self, prompt: Any, conditions: dict[str, Any], melody: Any, melody_program: int | None,
                   programs: list[int] | None, bpm: float | None, max_new_tokens: int | None) -> dict[str, Any]:
        if melody is not None and not (isinstance(prompt, str) and not prompt):
            raise ConfigError("give a melody to accompany or a prompt to continue, not both")
        body, forced, meter = "", [], conditions.get("meter")
        if melody is not None:
            melody_remi = remi_of(melody, "melody")
            played = remi_programs(melody_remi)
            program = melody_program if melody_program is not None else (
                MELODY_PROGRAM if MELODY_PROGRAM in played else played[0])
            if program not in played:
                raise ConfigError(f"melody_program={program}: the melody plays programs {played}; name one of them")
            meter = self._one_meter(melody_remi, "melody", meter)
            bars = conditions.get("bars") or remi_bars(melody_remi)
            if bars < remi_bars(melody_remi):  # accompany the first bars only
                melody_remi = first_bars(melody_remi, bars)
            forced = forced_notes(melody_remi, program)
            programs = sorted(set(programs or []) | {program})
            if len(programs) == 1:
                raise ConfigError(f"programs={programs}: name the accompanying instruments besides the melody's "
                                  f"program {program}, e.g. programs=[0, 32] (piano chords, bass)")
            tempo = remi_tempo(melody_remi)
        else:
            if isinstance(prompt, str) and not prompt:
                body = ""
            else:
                body = remi_of(prompt, "prompt")
                meter = self._one_meter(body, "prompt", meter)
                programs = sorted(set(programs or []) | set(remi_programs(body)))
            bars = conditions.get("bars") or max(DEFAULT_BARS, remi_bars(body) + 1 if body else DEFAULT_BARS)
            if body and bars <= remi_bars(body):
                raise ConfigError(f"bars={bars}: the prompt already has {remi_bars(body)} bars; ask for more")
            programs = programs or [MELODY_PROGRAM]
            tempo = remi_tempo(body) if body else None
        meter = meter or DEFAULT_METER
        try:
            bar_positions(meter)
        except ValueError as exc:
            raise ConfigError(f"meter={meter!r}: {exc}") from None
        tokens = list(self.prompt_format.token_ids)
        if time_signature_token(meter) not in self.prompt_format.token_ids:
            raise ConfigError(f"meter={meter!r} has no REMI time signature; REMI knows "
                              f"{', '.join(t[8:] for t in tokens if t.startswith('TimeSig_'))}")
        if bpm is not None:
            tempo = nearest_tempo_token(tokens, float(bpm))[6:]
        labels = self.check_conditions({**conditions, "meter": meter})
        header = self.prompt_format.header(programs=programs)
        input_ids = self.prompt_format.prompt_ids(labels, f"{header} {body}")
        budget = max_new_tokens if max_new_tokens is not None else TOKENS_PER_BAR * bars + 5 * len(forced)
        limit, source = position_limit(self.model)
        if len(input_ids) + budget > limit:
            budget = limit - len(input_ids)
            if max_new_tokens is not None or budget < 1:
                raise GenerationBudgetError(f"the prompt ({len(input_ids)} tokens) + max_new_tokens={max_new_tokens} "
                                            f"exceed the model's {limit} positions ({source}): ask for fewer bars or "
                                            "a shorter prompt")
        frame = {"meter": meter, "bars": bars, "programs": programs, "tempo": tempo, "forced": forced, "body": body}
        return {"input_ids": torch.tensor([input_ids]), "labels": labels, "frame": frame, "max_new_tokens": budget,
                "conditions": {**conditions, "meter": meter, "bars": bars, "programs": programs}}

    def check_conditions(self, conditions: dict[str, Any]) -> dict[str, str]:
        """Conditions as corpus labels (``abcgen.generation.pipeline.condition_labels``)."""
        given = {name: value for name, value in conditions.items() if name != "bars"}
        try:
            return condition_labels(given, self.vocabulary, self.trained_conditions)
        except AbcParseError as exc:  # a key or meter that cannot be read
            raise ConfigError(f"{exc}; conditions: {given}") from None

    @staticmethod
    def _one_meter(text: str, what: str, asked: str | None) -> str:
        meters = remi_meters(text)
        if len(meters) != 1:
            raise ConfigError(f"the {what} has meters {meters}: give one in a single meter")
        if asked and time_signature_token(asked)[8:] != meters[0]:
            raise ConfigError(f"meter={asked!r} but the {what} is in {meters[0]}: leave meter out or make them agree")
        return meters[0]

    def constraint(self, frame: dict[str, Any], max_new_tokens: int) -> RemiConstraint:
        """The grammar of one sequence of this request, advanced through the prompt's body."""
        try:
            constraint = RemiConstraint(self.prompt_format.token_ids, self.tokenizer.eos_token_id,
                                        self.tokenizer.pad_token_id, frame["meter"], frame["bars"], frame["programs"],
                                        max_new_tokens, tempo=frame["tempo"], forced=frame["forced"])
        except BudgetTooSmallError:
            raise
        except ValueError as exc:
            raise ConfigError(f"this request cannot be generated: {exc}") from None
        if frame["body"]:
            try:
                constraint.advance_text(frame["body"])
            except ValueError as exc:
                raise ConfigError(f"the prompt does not follow the REMI grammar of this request: {exc}") from None
        return constraint

    def _forward(self, model_inputs: dict[str, Any], num_return_sequences: int, temperature: float, top_p: float,
                 seed: int | None, constrained: bool, guidance_scale: float) -> dict[str, Any]:
        from transformers import LogitsProcessorList

        input_ids = model_inputs["input_ids"].to(self.model.device).repeat(num_return_sequences, 1)
        budget = model_inputs["max_new_tokens"]
        processors = LogitsProcessorList()
        if constrained:
            try:
                constraints = [self.constraint(model_inputs["frame"], budget) for _ in range(num_return_sequences)]
            except BudgetTooSmallError as exc:
                raise GenerationBudgetError(str(exc)) from exc
            processors.append(AbcLogitsProcessor(constraints, [input_ids.shape[1]] * num_return_sequences))
        rng_state = torch.random.get_rng_state()
        if seed is not None:
            torch.manual_seed(seed)
        try:
            output = guided_generate(self.model, self.prompt_format, model_inputs, guidance_scale)(
                input_ids, attention_mask=torch.ones_like(input_ids), do_sample=True, temperature=temperature,
                top_p=top_p, max_new_tokens=budget, logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id,
            )
        finally:
            if seed is not None:
                torch.random.set_rng_state(rng_state)
        return {"generated": output[:, input_ids.shape[1]:].cpu(), **model_inputs, "constrained": constrained}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        frame = model_outputs["frame"]
        eos = self.tokenizer.eos_token_id
        results = []
        for row in model_outputs["generated"].tolist():
            ids = row[: row.index(eos)] if eos in row else row
            remi = " ".join(part for part in (frame["body"], self.prompt_format.decode(ids)) if part)
            midi, problems = b"", []
            try:
                midi = remi_midi_bytes(remi)
                problems = check_remi_midi(midi, meter=frame["meter"], bars=frame["bars"], programs=frame["programs"])
            except ConversionError as exc:
                problems = [str(exc)]
            if eos not in row:
                problems.append("no EOS within max_new_tokens: the piece was cut off")
            results.append({"remi": remi, "midi": midi, "valid": not problems, "problems": problems,
                            "conditions": model_outputs["conditions"], "constrained": model_outputs["constrained"],
                            "num_tokens": len(ids), "num_notes": remi.count("Pitch_")})
        return results


def remi_midi_bytes(remi: str) -> bytes:
    """REMI text -> the bytes of a standard MIDI file (``abcgen.notation.remi.remi_to_midi_bytes``);
    ``ConversionError`` when it does not decode."""
    return remi_to_midi_bytes(remi)


def sample_remi(model: Any, tokenizer: Any, vocab: Any, conditions: Sequence[dict[str, str]], *,
                max_new_tokens: int = 256, seed: int = 0, top_p: float = 0.95, temperature: float = 1.0) -> list[Sample]:
    """Plain sampling of a REMI model (what training logs, as ``sample_tunes`` does for ABC): one piece per
    conditions mapping, the model writing its own track list and body from the control prefix, unconstrained.
    ``Sample.abc`` holds the REMI text; ``bar_check_ok`` says whether it decodes to MIDI with one meter and
    no note past its last bar. The global torch RNG is restored afterwards."""
    fmt = RemiPromptFormat(tokenizer, vocab)
    out = []
    with sampling_state(model, seed):
        for labels in conditions:
            ids = torch.tensor([fmt.prompt_ids(labels)], device=model.device)
            generated = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=True, top_p=top_p,
                                       temperature=temperature, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id)
            text = fmt.decode(generated[0, ids.shape[1]:].tolist())
            header = [token for token in text.split()[:16] if token.startswith("Program_")]
            body = text[text.index("Bar_None"):] if "Bar_None" in text else ""
            meters = remi_meters(body)
            try:
                midi = remi_midi_bytes(body)
                problems = check_remi_midi(midi, meter=meters[0], bars=remi_bars(body),
                                           programs=[int(t[8:]) for t in header]) if len(meters) == 1 else \
                    [f"meters {meters}: not one meter"]
            except ConversionError as exc:
                problems = [str(exc)]
            out.append(Sample(dict(labels), text, not problems, problems))
    return out


def load_midi_pipeline(model: str | Path) -> MidiGenerationPipeline:
    """``pipeline("midi-generation", model=model)`` with the model folder checked first (one-line
    ``ConfigError`` for a missing folder, tokenizer or weights, or a model that writes ABC)."""
    from transformers import pipeline

    check_model_path(model)
    if Path(model).is_dir() and model_representation(model) != "remi":
        raise ConfigError(f"model {str(model)!r} was trained on ABC, not REMI: generate with `abcgen generate` "
                          "without --midi, or train with data.representation: remi")
    try:
        return pipeline(TASK, model=str(model))
    except AbcgenError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise load_error(model, exc) from exc


def generate_midi_to_folder(model: str | Path, out: str | Path, prompt: Any = None, *, melody: Any = None,
                            render: Sequence[str] = ("png",), soundfont: str | Path | None = None,
                            overwrite: bool = False, **call: Any) -> dict[str, Any]:
    """``abcgen generate`` for a REMI model: ``piece_NN.mid`` (+ ``.png`` piano roll, ``.wav``) and
    ``summary.json`` in ``out``, written whole or not at all; returns the summary."""
    import json

    from abcgen.render.audio import render_midi_audio
    from abcgen.render.pianoroll import render_pianoroll

    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    unknown = [fmt for fmt in render if fmt not in ("png", "wav")]
    if unknown:
        raise ConfigError(f"render={list(render)}: a MIDI piece renders to png (piano roll) and wav; not {unknown}")
    pipe = load_midi_pipeline(model)
    pieces = pipe(prompt, melody=melody, **call)
    entries = []
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for index, piece in enumerate(pieces):
            name = f"piece_{index:02d}"
            entry = {"valid": piece["valid"], "problems": piece["problems"], "num_notes": piece["num_notes"],
                     "conditions": piece["conditions"]}
            (tmp / f"{name}.remi").write_text(piece["remi"] + "\n", encoding="utf-8")
            if piece["midi"]:
                (tmp / f"{name}.mid").write_bytes(piece["midi"])
                entry["file"] = str(out / f"{name}.mid")
                if "png" in render:
                    render_pianoroll(piece["midi"], tmp / f"{name}.png", title=name, bars=piece["conditions"]["bars"])
                if "wav" in render:
                    render_midi_audio(piece["midi"], tmp / f"{name}.wav", soundfont=soundfont)
            entries.append(entry)
        summary = {"model": str(model), "valid": sum(p["valid"] for p in pieces), "num": len(pieces), "pieces": entries}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def register_midi_pipeline() -> None:
    """Register ``midi-generation`` with transformers (``import abcgen`` does it, with ``abc-generation``)."""
    register_task(TASK, MidiGenerationPipeline, "multimodal")


__all__ = ["DEFAULT_BARS", "MidiGenerationPipeline", "check_remi_midi", "first_bars", "forced_notes",
           "generate_midi_to_folder", "load_midi_pipeline", "only_programs", "register_midi_pipeline", "remi_bars",
           "remi_midi_bytes", "remi_of", "remi_programs", "sample_remi"]

register_midi_pipeline()
