"""Control labels derived from a tune's header and body, normalised so that a value means one thing.

Header text is read directly (music21 drops ``R:`` when parsing). Free-text values are lower-cased and
stripped of trailing punctuation; rhythms are mapped to a closed list where a synonym is known
(``double jig`` -> ``jig``); Essen's regional ``O:`` paths are cut to the country.
"""

from __future__ import annotations

import re
import unicodedata
from fractions import Fraction

from abcgen.notation.tune import Tune

RHYTHMS = {
    "reel": "reel", "reels": "reel", "single reel": "reel", "double reel": "reel",
    "jig": "jig", "double jig": "jig", "jigs": "jig", "single jig": "single jig",
    "slip jig": "slip jig", "slip-jig": "slip jig", "hop jig": "slip jig",
    "hornpipe": "hornpipe", "hornpipes": "hornpipe",
    "polka": "polka", "slide": "slide", "waltz": "waltz", "march": "march", "quick march": "march",
    "strathspey": "strathspey", "mazurka": "mazurka", "air": "air", "slow air": "air",
    "set dance": "set dance", "highland fling": "fling", "fling": "fling", "barndance": "barndance",
    "barn dance": "barndance", "schottische": "schottische", "clog": "clog", "country dance": "country dance",
    "song": "song", "lied": "song", "long dance": "long dance", "quickstep": "quickstep",
    "planxty": "planxty", "walkaround": "walkaround", "walk around": "walkaround", "minuet": "minuet", "polonaise": "polonaise", "gavotte": "gavotte",
    "chorale": "chorale", "kinderlied": "children's song", "ballade": "ballad", "ballad": "ballad",
}
_CONTINENTS = {"europa", "europe", "asien", "asia", "afrika", "africa", "amerika", "america", "australien"}
_TEMPO_WORDS = {
    "slow": "slow", "very slow": "slow", "slowly": "slow", "andante": "moderate", "moderate": "moderate",
    "moderato": "moderate", "lively": "fast", "quick": "fast", "fast": "fast", "brisk": "fast",
    "allegro": "fast", "spirited": "fast", "with spirit": "fast", "animated": "fast", "adagio": "slow",
    "largo": "slow", "lento": "slow", "gracefully": "moderate", "in moderate time": "moderate",
}


def ascii_fold(text: str) -> str:
    """``'Österreich'`` -> ``'Osterreich'``: control values become tokens, and byte-level tokenizers do not
    decode non-ASCII added tokens back to the same text."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def clean_text(value: str | None) -> str:
    """Lower-case, ASCII-fold, strip quotes, brackets and trailing full stops: ``'Reel.'`` -> ``'reel'``."""
    if not value:
        return ""
    text = re.sub(r"[\"\[\]{}]", "", ascii_fold(value)).strip().lower()
    return re.sub(r"[\s.;:,!]+$", "", text)


def _compact(text: str) -> str:
    """A spelling key without spaces, hyphens or underscores: ``slip jig``, ``slip-jig``, ``slipjig`` and
    ``slip_jig`` (a control token's spelling) are one key."""
    return re.sub(r"[\s_-]+", "", text)


# Every spelling of a known rhythm by its compact key, with plurals: ``setdance``/``set dances`` -> ``set dance``.
_RHYTHM_SPELLINGS = {_compact(k): v for k, v in RHYTHMS.items()}
_RHYTHM_SPELLINGS.update({_compact(v): v for v in RHYTHMS.values()})
_RHYTHM_SPELLINGS.update({f"{k}es" if k.endswith(("s", "ch", "z")) else f"{k}s": v
                          for k, v in list(_RHYTHM_SPELLINGS.items()) if not k.endswith("s")})


def _known_rhythm(phrase: str) -> str | None:
    return _RHYTHM_SPELLINGS.get(_compact(phrase))


def normalise_rhythm(value: str | None) -> str:
    """Map an ``R:`` value to the closed rhythm list, whatever its spelling (``Slipjig``, ``slip-jig``,
    ``slip_jig`` and ``slip jigs`` are all ``slip jig``); an unknown genre is kept as its first phrase, with
    spaces, hyphens and underscores made single spaces. The one rhythm normaliser: the corpus labels, the
    control vocabulary and the pipeline's condition check all go through it (``normalise_label``)."""
    text = clean_text(value)
    if not text:
        return ""
    if (known := _known_rhythm(text)) is not None:
        return known
    for word in re.split(r"[,;/(]| - | -- ", text):
        if (known := _known_rhythm(word.strip())) is not None:
            return known
    for key, name in RHYTHMS.items():
        if re.search(rf"\b{re.escape(key)}\b", text):
            return name
    return re.sub(r"[\s_-]+", " ", re.split(r"[,;/(]", text)[0]).strip()


def normalise_label(name: str, value: object) -> str:
    """A condition value as the corpus spells it, for the free-text conditions (rhythm, origin, composer,
    tempo); other conditions are returned stripped. Used on corpus rows, vocabulary look-ups and requested
    conditions alike, so a user's ``slipjig`` finds the corpus's ``slip jig``."""
    text = str(value).strip()
    if name == "rhythm":
        return normalise_rhythm(text)
    if name == "origin":
        return normalise_origin(text)
    if name == "composer":
        return normalise_composer(text)
    if name == "tempo":
        return clean_text(text)
    return text


def normalise_origin(value: str | None) -> str:
    """``'Europa, Mitteleuropa, Deutschland'`` -> ``'deutschland'``; ``'China, Shaanxi, Zizhou'`` -> ``'china'``."""
    text = clean_text(value)
    if not text:
        return ""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts[0] in _CONTINENTS and len(parts) >= 3:
        return parts[2]
    if parts[0] in _CONTINENTS and len(parts) == 2:
        return parts[1]
    return parts[0]


def normalise_composer(value: str | None) -> str:
    text = clean_text(value)
    if not text:
        return ""
    if text.startswith("trad") or text in {"anon", "anonymous", "unknown"}:
        return "traditional"
    return text


def normalise_meter(meter: Fraction | None, written: str | None) -> str:
    """``C`` -> ``4/4``, ``C|`` -> ``2/2``, free meter -> ``free``; other values as written (``6/8``)."""
    if meter is None:
        return "free"
    text = (written or "4/4").strip()
    if text == "C":
        return "4/4"
    if text == "C|":
        return "2/2"
    return text.replace(" ", "")


def tempo_bpm(q_value: str | None) -> int:
    """Quarter-note beats per minute from a ``Q:`` value (``1/4=120``, ``3/8=80``, ``120``); 0 if none."""
    if not q_value:
        return 0
    m = re.search(r"(\d+)/(\d+)\s*=\s*(\d+)", q_value)
    if m:
        beat = Fraction(int(m.group(1)), int(m.group(2)))
        return round(int(m.group(3)) * beat / Fraction(1, 4))
    m = re.fullmatch(r"\s*(\d+)\s*", q_value)
    return int(m.group(1)) if m else 0


def tempo_label(bpm: int, notes: list[str]) -> str:
    """``slow`` / ``moderate`` / ``fast`` from the bpm, else from tempo words in ``N:``/``Q:`` text."""
    if bpm:
        return "slow" if bpm < 80 else "moderate" if bpm < 120 else "fast"
    for note in notes:
        for phrase in re.findall(r'"([^"]+)"', note) or [note]:
            word = clean_text(phrase)
            if word in _TEMPO_WORDS:
                return _TEMPO_WORDS[word]
    return ""


def header_labels(tune: Tune, *, default_origin: str = "") -> dict[str, str | int]:
    """Labels read from the header: key, meter, unit_length, rhythm, origin, composer, tempo."""
    key = tune.key
    bpm = tempo_bpm(tune.get("Q"))
    return {
        "title": tune.title,
        "key": key.label,
        "meter": normalise_meter(tune.meter, tune.get("M")),
        "unit_length": f"{tune.unit_length.numerator}/{tune.unit_length.denominator}",
        "rhythm": normalise_rhythm(tune.get("R")),
        "origin": normalise_origin(tune.get("O")) or default_origin,
        "composer": normalise_composer(tune.get("C")),
        "tempo": tempo_label(bpm, tune.get_all("N") + tune.get_all("Q")),
        "tempo_bpm": bpm,
    }
