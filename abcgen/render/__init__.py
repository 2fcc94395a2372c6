"""Render ABC tunes to MIDI, audio and sheet music.

    abcgen render TUNE.abc --to mid,wav,svg,png [--out FOLDER] [--soundfont FILE.sf2]

    from abcgen.render import render_abc
    paths = render_abc(abc_text, "out/tune", ("mid", "wav", "flac", "svg", "png"))  # {"mid": Path(...), ...}

Formats (:data:`FORMATS`) and the tool behind each:

* ``mid`` -- abc2midi (Debian ``abcmidi``) on the tune as written, so ``%%MIDI`` directives are honoured.
* ``wav``, ``flac``, ``ogg`` -- the MIDI played by fluidsynth (Debian ``fluidsynth``) with a General MIDI
  soundfont: ``soundfont=``/``--soundfont``, else ``$ABCGEN_SOUNDFONT``, else Debian's
  ``fluid-soundfont-gm`` (``/usr/share/sounds/sf2/default-GM.sf2`` or ``FluidR3_GM.sf2``). ``flac`` is
  lossless, ``ogg`` Ogg Vorbis; both are written by fluidsynth's libsndfile, no other encoder is needed.
* ``svg`` -- verovio (PyPI ``verovio``) on the *normalised* tune (comments, lyrics and directives
  dropped; an ABC that cannot be read raises :class:`~abcgen.errors.AbcParseError` saying where).
  A single-voice tune is read by verovio's own ABC importer; a multi-voice tune goes through MusicXML
  (abctoolkit's abc2xml), since verovio's ABC importer reads one voice only. The whole score is laid out
  on one tall page. verovio runs in a child process: its ABC importer aborts the process on some
  malformed input, which must not take the caller down.
* ``png`` -- the SVG rasterised by cairosvg (PyPI ``cairosvg``, which needs Debian ``libcairo2``) on a
  white background.

**Long audio.** A tune's audio length is read from its MIDI before fluidsynth runs: above
:data:`AUDIO_WARN_SECONDS` (10 minutes) a warning is logged; above ``max_audio_seconds`` (default
:data:`AUDIO_MAX_SECONDS`, one hour: a 44.1 kHz stereo WAV of about 635 MB) the render is refused with a
``ConfigError`` -- almost always a runaway generated tune, not music anyone meant to hear -- unless the
caller raises the limit (``max_audio_seconds=None`` / ``--max-audio-seconds 0`` for none).

**Outputs** are written to hidden temporary siblings (``.tune.tmp-PID.wav``) and renamed into place only
when every format of the tune has rendered, so a failure leaves no half-written file and the previous
render of the tune untouched; an output folder that cannot be written is refused before any work.

A missing tool raises :class:`~abcgen.errors.ToolNotFoundError` naming the package to install, checked
before anything is written; a tool that fails raises :class:`~abcgen.errors.ConversionError` naming the
tune and the tail of the tool's output; an unknown format raises :class:`~abcgen.errors.ConfigError`
listing the valid ones.

**MIDI that did not come from ABC** (a model that writes multi-track MIDI): :func:`render_pianoroll`
(:mod:`~abcgen.render.pianoroll`) draws it as a piano roll PNG (bars against pitch, one colour per
General MIDI program; matplotlib, from the ``eval`` extra) and
:func:`render_midi_audio` plays it to ``wav``/``flac``/``ogg`` with the same fluidsynth, soundfont and
limits as above.

The package: :mod:`~abcgen.render.api` (formats, tool checks, :func:`render_abc`, :func:`render_file`),
:mod:`~abcgen.render.midi` (abc2midi), :mod:`~abcgen.render.audio` (fluidsynth, soundfonts, audio length
limits), :mod:`~abcgen.render.sheet` (verovio SVG, cairosvg PNG), :mod:`~abcgen.render.command` (the
command line). Rebinding a setting re-exported here (e.g. ``SOUNDFONT_CANDIDATES``) changes nothing: set it
in the submodule that defines it.
"""

from __future__ import annotations

from abcgen.render.api import (
    DEFAULT_FORMATS,
    FORMATS,
    check_render_request,
    parse_formats,
    render_abc,
    render_file,
)
from abcgen.render.audio import (
    AUDIO_FORMATS,
    AUDIO_MAX_SECONDS,
    AUDIO_WARN_SECONDS,
    DEFAULT_GAIN,
    SOUNDFONT_CANDIDATES,
    SOUNDFONT_ENV,
    find_soundfont,
    render_midi_audio,
)
from abcgen.render.command import add_render_arguments, render_command
from abcgen.render.pianoroll import render_pianoroll

__all__ = [
    "AUDIO_FORMATS",
    "AUDIO_MAX_SECONDS",
    "AUDIO_WARN_SECONDS",
    "DEFAULT_FORMATS",
    "DEFAULT_GAIN",
    "FORMATS",
    "SOUNDFONT_CANDIDATES",
    "SOUNDFONT_ENV",
    "add_render_arguments",
    "check_render_request",
    "find_soundfont",
    "parse_formats",
    "render_abc",
    "render_command",
    "render_file",
    "render_midi_audio",
    "render_pianoroll",
]
