"""``wav``, ``flac``, ``ogg``: the tune's MIDI played by fluidsynth (Debian ``fluidsynth``) with a General
MIDI soundfont, and the limits on how long that audio may be (see :mod:`abcgen.render`); and
:func:`render_midi_audio`, the same for a MIDI file that did not come from ABC."""

from __future__ import annotations

import functools
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from abcgen.atomic import tmp_sibling
from abcgen.errors import ConfigError, ConversionError, ToolNotFoundError
from abcgen.render._tools import TOOL_TIMEOUT_S, tail, which
from abcgen.render.pianoroll import read_midi

logger = logging.getLogger(__name__)

# Our format name -> fluidsynth's ``-T`` file type (libsndfile's names).
AUDIO_FORMATS: dict[str, str] = {"wav": "wav", "flac": "flac", "ogg": "oga"}

# Debian's fluid-soundfont-gm (default-GM.sf2 is the alternatives link, FluidR3_GM.sf2 the file), then
# the places other distributions use.
SOUNDFONT_CANDIDATES: tuple[str, ...] = (
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
)
SOUNDFONT_ENV = "ABCGEN_SOUNDFONT"

_FLUIDSYNTH_INSTALL = "apt-get install fluidsynth fluid-soundfont-gm"
_FLUIDSYNTH_FATAL_RE = re.compile(r"not a SoundFont or MIDI file|[Ff]ailed to load|[Cc]ouldn't load|No such file")
_MIN_RATE, _MAX_RATE = 8000, 96000  # fluidsynth's synth.sample-rate range
# Audio longer than this is logged as a warning; longer than AUDIO_MAX_SECONDS is refused unless asked for.
AUDIO_WARN_SECONDS = 600.0
AUDIO_MAX_SECONDS = 3600.0
# fluidsynth's master gain: its default 0.2 leaves a solo tune peaking near -25 dBFS; 0.5 keeps a
# four-part chorale (peak about -6 dBFS) clear of clipping.
DEFAULT_GAIN = 0.5


def find_soundfont(soundfont: str | os.PathLike[str] | None = None) -> Path:
    """The General MIDI soundfont to play with: ``soundfont`` if given, else ``$ABCGEN_SOUNDFONT``, else the
    first of :data:`SOUNDFONT_CANDIDATES` that exists.

    A given path that is not a file is a ConfigError; no soundfont at all is a ToolNotFoundError."""
    for given, where in ((soundfont, "soundfont"), (os.environ.get(SOUNDFONT_ENV) or None, SOUNDFONT_ENV)):
        if given is not None:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ConfigError(f"{where} {str(path)!r} is not a file; give a .sf2/.sf3 General MIDI soundfont")
            if not _is_soundfont(path):
                raise ConfigError(f"{where} {str(path)!r} is not a SoundFont (no RIFF sfbk header); give a "
                                  ".sf2/.sf3 General MIDI soundfont")
            return path
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ToolNotFoundError(
        f"no General MIDI soundfont found (looked for {', '.join(SOUNDFONT_CANDIDATES)}); install one with: "
        f"apt-get install fluid-soundfont-gm, or pass a .sf2 file with --soundfont / soundfont="
    )


def _is_soundfont(path: Path) -> bool:
    """Whether ``path`` starts like a SoundFont (a RIFF file of form ``sfbk``): fluidsynth renders silence,
    with exit status 0, from a file that is not one."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[:4] == b"RIFF" and head[8:12] == b"sfbk"


@functools.lru_cache(maxsize=8)
def _fluidsynth_file_types(fluidsynth: str) -> frozenset[str]:
    """The ``-T`` file types this fluidsynth can write (``fluidsynth -T help``)."""
    try:
        result = subprocess.run([fluidsynth, "-T", "help"], capture_output=True, text=True, errors="replace",
                                timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"'([a-z0-9]+)'", result.stdout + result.stderr))


def check_audio_tools(audio: Sequence[str], soundfont: str | os.PathLike[str] | None) -> Path:
    """Raise ToolNotFoundError unless fluidsynth, a soundfont and a libsndfile writing every format of
    ``audio`` (a non-empty list of :data:`AUDIO_FORMATS` keys) are there; return the soundfont."""
    fluidsynth = which("fluidsynth", _FLUIDSYNTH_INSTALL)
    found = find_soundfont(soundfont)
    types = _fluidsynth_file_types(fluidsynth)
    for fmt in audio:
        if types and AUDIO_FORMATS[fmt] not in types:
            raise ToolNotFoundError(
                f"this fluidsynth ({fluidsynth}) cannot write {fmt} (its libsndfile lacks it; it writes: "
                f"{', '.join(sorted(types))}); install Debian's build with: {_FLUIDSYNTH_INSTALL}, "
                f"or choose another audio format"
            )
    return found


def check_audio_settings(sample_rate: int, gain: float) -> None:
    """ConfigError for a sample rate fluidsynth does not take or a gain outside its range."""
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not _MIN_RATE <= sample_rate <= _MAX_RATE:
        raise ConfigError(f"sample_rate {sample_rate!r}: give an integer from {_MIN_RATE} to {_MAX_RATE} Hz")
    if not isinstance(gain, int | float) or not 0 < gain <= 10:
        raise ConfigError(f"gain {gain!r}: give a number above 0 and at most 10 (fluidsynth's synth.gain)")


def check_max_audio(max_audio_seconds: float | None) -> None:
    """ConfigError unless ``max_audio_seconds`` is a number of seconds above 0, or None."""
    if max_audio_seconds is not None and (isinstance(max_audio_seconds, bool) or
                                          not isinstance(max_audio_seconds, int | float) or max_audio_seconds <= 0):
        raise ConfigError(f"max_audio_seconds {max_audio_seconds!r}: give a number of seconds above 0, or None "
                          "for no limit")


def check_audio_length(seconds: float, name: str, max_audio_seconds: float | None) -> None:
    """Warn above AUDIO_WARN_SECONDS; refuse above ``max_audio_seconds`` (before fluidsynth writes anything)."""
    size_mb = seconds * 44100 * 4 / 1e6
    if max_audio_seconds is not None and seconds > max_audio_seconds:
        raise ConfigError(f"tune {name!r} plays for {seconds:.0f} s ({seconds / 60:.1f} minutes, a WAV of about "
                          f"{size_mb:.0f} MB), "
                          f"more than max_audio_seconds={max_audio_seconds:g}: render mid/svg only, or raise the "
                          "limit (--max-audio-seconds SECONDS, 0 = no limit)")
    if seconds > AUDIO_WARN_SECONDS:
        logger.warning("tune %r plays for %.0f minutes: its audio will be large (a WAV of about %.0f MB)", name,
                       seconds / 60, size_mb)


def render_audio(midi: Path, out: Path, fmt: str, soundfont: Path, sample_rate: int, gain: float,
                 name: str) -> None:
    """Play ``midi`` with fluidsynth into ``out`` as ``fmt``; ConversionError naming the tune and quoting
    fluidsynth when it fails (or writes nothing)."""
    fluidsynth = which("fluidsynth", _FLUIDSYNTH_INSTALL)
    out.unlink(missing_ok=True)
    command = [fluidsynth, "-ni", "-F", str(out), "-T", AUDIO_FORMATS[fmt], "-r", str(sample_rate),
               "-g", f"{gain:g}", str(soundfont), str(midi)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, errors="replace",
                                timeout=TOOL_TIMEOUT_S, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"fluidsynth did not finish {fmt} for tune {name!r} within {TOOL_TIMEOUT_S} s") from exc
    output = result.stdout + result.stderr
    # fluidsynth exits 0 and writes silence when it cannot load the soundfont or read the MIDI file.
    fatal = [line for line in output.splitlines() if _FLUIDSYNTH_FATAL_RE.search(line)]
    if result.returncode != 0 or fatal or not out.is_file() or out.stat().st_size <= 64:
        raise ConversionError(
            f"fluidsynth failed to write {fmt} for tune {name!r} (exit status {result.returncode}): {tail(output)}"
        )
    for line in output.splitlines():
        if "error" in line.lower():
            logger.warning("fluidsynth (%s, %s): %s", name, fmt, line.strip())
    logger.debug("fluidsynth (%s, %s): %s", name, fmt, tail(output))


def render_midi_audio(
    midi: bytes | str | os.PathLike[str],
    out: Path,
    fmt: str = "wav",
    soundfont: str | os.PathLike[str] | None = None,
    *,
    sample_rate: int = 44100,
    gain: float = DEFAULT_GAIN,
    max_audio_seconds: float | None = AUDIO_MAX_SECONDS,
) -> Path:
    """Play an existing MIDI file (its bytes or its path) with fluidsynth into ``out`` as ``fmt`` (a key of
    :data:`AUDIO_FORMATS`); return ``out``.

    The same tools, soundfont search, settings and length limits as an ABC tune's audio (see
    :mod:`abcgen.render`); the audio is written to a temporary sibling and renamed over ``out`` (its folder
    is created). ConfigError for a bad format, setting, ``out`` or a missing file; ConversionError for MIDI
    that cannot be read or holds no notes, or when fluidsynth fails.
    """
    fmt = str(fmt).strip().lower().lstrip(".")
    if fmt not in AUDIO_FORMATS:
        raise ConfigError(f"audio format {fmt!r}: give one of {', '.join(AUDIO_FORMATS)}")
    out = Path(out)
    suffix = out.suffix.lower().lstrip(".")
    if suffix and {"oga": "ogg"}.get(suffix, suffix) != fmt:
        raise ConfigError(f"audio output {str(out)!r} ends in .{suffix} but fmt is {fmt!r}: give a .{fmt} path "
                          f"or fmt={suffix!r}")
    if out.is_dir():
        raise ConfigError(f"audio output {str(out)!r} is a folder: give a .{fmt} file path")
    check_audio_settings(sample_rate, gain)
    check_max_audio(max_audio_seconds)
    found = check_audio_tools([fmt], soundfont)
    score, what = read_midi(midi, ttype="second")
    if not any(len(track.notes) for track in score.tracks):
        raise ConversionError(f"{what} holds no notes: there is nothing to play")
    is_data = isinstance(midi, bytes | bytearray | memoryview)
    name = "MIDI data" if is_data else Path(midi).name  # the "tune" of the length and fluidsynth messages
    check_audio_length(float(score.end()), name, max_audio_seconds)
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = tmp_sibling(out)  # fluidsynth is told the file type (-T), so the name needs no suffix
    try:
        with tempfile.TemporaryDirectory(prefix="abcgen-render-") as tmp:
            if is_data:
                path = Path(tmp) / "input.mid"
                path.write_bytes(bytes(midi))
            else:
                path = Path(midi)
            render_audio(path, staged, fmt, found, sample_rate, gain, name)
        os.replace(staged, out)
    finally:
        staged.unlink(missing_ok=True)
    return out
