"""Extend a pretrained Hugging Face tokenizer with ABC music units and control tokens.

What changes in the base tokenizer, and why:

* every unit of the spec (``units.py``: ``A2``, ``^c'3/2``, ``|:``, ``(3``, ...) becomes an added token
  (``normalized=False``: matched on the raw text, so no normaliser can change what it matches;
  ``lstrip``/``rstrip=False``: the spaces around a note are music -- they break beams -- and must stay
  their own tokens). Added tokens are found first, by a leftmost-longest match over the whole text, so
  ``A2B`` gives ``A2`` + ``B`` and ``A/2`` wins over ``A/``;
* a ``Split`` pre-tokenizer is put in front of the base one (``isolate_units=True``) that cuts body lines
  into music units, so a one-character unit (``A``, ``|``) is encoded as the base's own single token and
  never merged with its neighbours (``ABcd`` -> ``A B c d``, not ``AB cd``). Header lines (``T:Reel``),
  comments, chord symbols and decorations are matched whole first so that their words keep the base
  tokenization;
* control tokens (``<key=D_major>``) are *special* added tokens: they are never split, and
  ``skip_special_tokens=True`` drops them together with BOS/EOS/pad, so ``ids_to_abc`` returns ABC;
* a ``<pad>`` token is added when the base has none: padding with EOS would let the pad mask hide the
  real EOS from the loss;
* a SentencePiece-style ``Metaspace`` pre-tokenizer that prepends a space to *every* piece
  (``prepend_scheme="always"``) is switched to ``"first"``: after our split it would otherwise add a space
  in front of every note. Bases whose *normaliser* prepends a space (old Llama-2 files) cannot be fixed
  this way; the round-trip check of ``tokenizer_build_command`` reports them.

The result is an ordinary ``tokenizer.json`` folder: ``AutoTokenizer.from_pretrained(folder)`` loads it,
without abcgen installed.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase

from abcgen.controls import ControlVocabulary
from abcgen.errors import ConfigError
from abcgen.tokenization.units import SPEC_FILENAME, UnitSpec
from abcgen.versioned import read_versioned

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
METADATA_FILENAME = "abcgen_tokenizer.json"
PAD_TOKEN = "<pad>"
CONTROL_TOKEN_RE = re.compile(r"^<([a-z_]+)=(.*)>$")

# Pieces the pre-tokenizer isolates, tried in this order at each position (Oniguruma syntax, where ``^``
# always matches at a line start). Whole lines and quoted/bang-delimited texts come first so that the
# note pattern never cuts into a title, a chord symbol or a decoration name.
UNIT_SPLIT_PATTERN = "|".join(
    [
        r"^[A-Za-z+]:[^\n]*",  # a header or body field line (T:..., K:D, V:1): kept whole
        r"^%[^\n]*",  # a comment line
        r'"[^"\n]*"',  # chord symbol or annotation
        r"![^!\n]*!",  # decoration !trill!
        r"\[[A-Za-z]:[^\]\n]*\]",  # inline field [K:G]
        r"\[[0-9][0-9,\-]*",  # ending written apart from a bar line: [1  [1,2
        r"[_^=]{0,2}[A-Ga-g][,']*[0-9]*/*[0-9]*",  # note with accidental, octave marks and duration
        r"[zxZX][0-9]*/*[0-9]*",  # rest
        r"\[\||:*\|[\]|:]*(?:[0-9][0-9,\-]*)?|::+",  # bar lines, endings glued to them
        r"\([0-9](?::[0-9]*){0,2}",  # tuplet (3  (3:2:3
        r"[<>]+",  # broken rhythm
    ]
)


def load_base_tokenizer(base: str | Path) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained(base)`` with an error that says what to pass instead."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot load the base tokenizer {str(base)!r} ({type(exc).__name__}: {exc}); pass a Hugging Face "
            "hub id that is in the local cache (or reachable) or a folder holding tokenizer.json / "
            "tokenizer_config.json"
        ) from exc
    return tokenizer


def _base_name(base: str | Path | PreTrainedTokenizerBase) -> str:
    if isinstance(base, PreTrainedTokenizerBase):
        return str(getattr(base, "name_or_path", "") or type(base).__name__)
    return str(base)


def _adapted_pre_tokenizer_state(pre_tokenizer: dict[str, Any] | None, isolate_units: bool) -> dict[str, Any] | None:
    """The JSON of the new pre-tokenizer: Metaspace "always" -> "first", then our split in front."""

    def fix(node: dict[str, Any]) -> None:
        if node.get("type") == "Metaspace" and node.get("prepend_scheme") == "always":
            node["prepend_scheme"] = "first"
        for child in node.get("pretokenizers", []) or []:
            fix(child)

    state = copy.deepcopy(pre_tokenizer)
    if state is not None:
        fix(state)
    if not isolate_units:
        return state
    split = {"type": "Split", "pattern": {"Regex": UNIT_SPLIT_PATTERN}, "behavior": "Isolated", "invert": False}
    if state is not None and state.get("type") == "Sequence" and (state.get("pretokenizers") or [None])[0] == split:
        return state  # already a music tokenizer (extending a fine-tuned model again): split once, not twice
    return {"type": "Sequence", "pretokenizers": [split] + ([state] if state is not None else [])}


def _install_pre_tokenizer(tokenizer: PreTrainedTokenizerBase, isolate_units: bool) -> None:
    backend = tokenizer.backend_tokenizer
    state = json.loads(backend.to_str())
    new_pre = _adapted_pre_tokenizer_state(state.get("pre_tokenizer"), isolate_units)
    if new_pre == state.get("pre_tokenizer"):
        return
    state["pre_tokenizer"] = new_pre
    # The Python pre-tokenizer classes cannot be built from JSON directly; a whole Tokenizer can. (Its
    # class is taken from the backend rather than imported: ruff counts the repo's tokenizers/ data
    # folder as a first-party package and would sort the import wrongly.)
    backend.pre_tokenizer = type(backend).from_str(json.dumps(state)).pre_tokenizer


def build_music_tokenizer(
    base: str | Path | PreTrainedTokenizerBase,
    units: UnitSpec | Sequence[str],
    controls: ControlVocabulary | Sequence[str] | None = None,
    *,
    isolate_units: bool = True,
    save_to: str | Path | None = None,
) -> PreTrainedTokenizerBase:
    """A copy of ``base`` extended with the unit tokens and the control tokens (the base is not changed).

    ``base`` is a hub id, a folder, or a loaded fast tokenizer; ``units`` a ``UnitSpec`` or unit texts;
    ``controls`` a ``ControlVocabulary`` or control token texts. ``save_to`` also writes the folder
    (``save_music_tokenizer``). Raises ``ConfigError`` on a base that cannot be loaded or is not fast.
    """
    base_tok = load_base_tokenizer(base) if isinstance(base, str | Path) else base
    if not getattr(base_tok, "is_fast", False):
        raise ConfigError(
            f"base tokenizer {_base_name(base)!r} is a slow (Python) tokenizer; abcgen extends the Rust "
            "`tokenizers` pipeline: pass a model folder that has tokenizer.json"
        )
    tokenizer = copy.deepcopy(base_tok)
    num_base = len(base_tok)
    _install_pre_tokenizer(tokenizer, isolate_units)
    # Without this, decode() may drop the space before punctuation ("A ," -> "A,"), which is music here.
    tokenizer.clean_up_tokenization_spaces = False
    tokenizer.init_kwargs["clean_up_tokenization_spaces"] = False

    unit_texts = units.texts() if isinstance(units, UnitSpec) else list(units)
    bad = [text for text in unit_texts if not text or text != text.strip() or "\n" in text]
    if bad:
        raise ConfigError(f"unit texts {bad[:5]!r} are empty or contain whitespace; regenerate the unit spec")
    num_before = len(tokenizer)
    tokenizer.add_tokens(
        [AddedToken(text, normalized=False, lstrip=False, rstrip=False, special=False) for text in unit_texts]
    )
    num_units_new = len(tokenizer) - num_before

    control_texts = controls.tokens() if isinstance(controls, ControlVocabulary) else list(controls or [])
    num_before = len(tokenizer)
    if control_texts:
        tokenizer.add_tokens(
            [AddedToken(text, normalized=False, lstrip=False, rstrip=False, special=True) for text in control_texts],
            special_tokens=True,
        )
    num_controls_new = len(tokenizer) - num_before

    pad_added = False
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, normalized=False, special=True)})
        pad_added = True

    not_decodable = [text for text in control_texts if tokenizer.decode(tokenizer.convert_tokens_to_ids([text])) != text]
    if not_decodable:
        # Encoding is still right (the token is matched on the raw text); only decode() garbles them.
        # Byte-level decoders read Latin-1 characters of added tokens as single bytes.
        logger.warning(
            "%d control tokens do not decode back to their text with base %r (e.g. %r); ASCII-fold those "
            "values in the corpus labeller to fix it", len(not_decodable), _base_name(base), not_decodable[:3]
        )
    tokenizer.abcgen_metadata = {  # read by save_music_tokenizer
        "schema_version": SCHEMA_VERSION,
        "base": _base_name(base),
        "num_base_tokens": num_base,
        "vocab_size": len(tokenizer),
        "num_units": len(unit_texts),
        "num_units_new": num_units_new,
        "num_controls": len(control_texts),
        "num_controls_new": num_controls_new,
        "pad_token_added": pad_added,
        "isolate_units": isolate_units,
        "unit_split_pattern": UNIT_SPLIT_PATTERN if isolate_units else None,
        "controls_not_decodable": not_decodable,
    }
    if save_to is not None:
        save_music_tokenizer(tokenizer, save_to, units if isinstance(units, UnitSpec) else None)
    return tokenizer


def save_music_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path, spec: UnitSpec | None = None) -> Path:
    """Write the tokenizer (``save_pretrained``), its unit spec and ``abcgen_tokenizer.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    if spec is not None:
        spec.save(folder / SPEC_FILENAME)
    metadata = dict(getattr(tokenizer, "abcgen_metadata", {}) or {"schema_version": SCHEMA_VERSION})
    metadata["vocab_size"] = len(tokenizer)
    (folder / METADATA_FILENAME).write_text(json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def load_music_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """Load a folder written by ``save_music_tokenizer``; checks its ``schema_version``."""
    folder = Path(folder)
    meta_path = folder / METADATA_FILENAME
    if not meta_path.is_file():
        raise ConfigError(f"{str(folder)!r} has no {METADATA_FILENAME}: it is not an abcgen music tokenizer; "
                          "build one with `abcgen tokenizer build`")
    metadata = read_versioned(meta_path, "music tokenizer metadata", SCHEMA_VERSION,
                              fix="rebuild the tokenizer with `abcgen tokenizer build`")
    tokenizer = load_base_tokenizer(folder)
    tokenizer.abcgen_metadata = metadata
    return tokenizer


def abc_to_ids(tokenizer: PreTrainedTokenizerBase, abc: str, add_special_tokens: bool = False) -> list[int]:
    """Token ids of an ABC text (optionally with the base's BOS/EOS)."""
    return list(tokenizer(abc, add_special_tokens=add_special_tokens)["input_ids"])


def ids_to_abc(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    """The ABC text of token ids: special tokens (BOS, EOS, pad, controls) are dropped."""
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def control_token_text(token: str) -> str | None:
    """A readable text of a control token (``<key=D_major>`` -> ``"key D major"``), or None for others."""
    match = CONTROL_TOKEN_RE.match(token)
    if not match:
        return None
    name, value = match.groups()
    return f"{name.replace('_', ' ')} {value.replace('_', ' ')}"
