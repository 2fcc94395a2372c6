"""Constrained decoding as a grammar: under it a model cannot write an invalid tune body.

The pipeline writes the header itself (``X:1``, ``M:``, ``L:``, ``K:`` last, with the requested values), so
what is constrained is the *body* the model writes after the prompt's ``K:...\\n``. Every state of the
tune being written allows only the tokens that keep it completable into a valid tune within the token
budget; ``AbcLogitsProcessor`` gives everything else ``-inf``.

**Units** (``vocabulary.py``). Each token the model may emit in the body is one complete unit, read once
per tokenizer by lexing every vocabulary entry's text with ``abcgen.notation.lexer.lex_body``:

* a single note or rest (``A``, ``^c'``, ``B,2``, ``d3/``, ``z4``) with its duration in ``L:`` units
  (not ``C'`` or ``c,``: legal ABC, but abc2midi rejects octave marks against the letter's case);
* a single bar line of the kinds ``|  ||  |]  |:  :|  ::`` (``:||`` counts as ``:|``, ``:|:`` as ``::``),
  a first ending ``|1``/``|[1`` or a second ending ``:|2``/``:|[2``;
* a run of spaces, a newline, EOS (and pad after EOS);
* an idiom token (``parse_idiom``): broken rhythm ``> < >> <<``, a tuplet ``(3``/``(p:q:r``, a tie
  ``-``, ``{`` ``}`` of grace notes, a decoration (``~``, ``.``, ``!trill!``), ``(`` ``)`` of a slur, a
  quoted chord name ``"Am"``, ``[`` ``]`` of a chord -- offered only by the idiom rules.

A token whose text is exactly two of these units written together -- a BPE merge such as `` (``, `` |]``,
``A2 `` -- is a *composite*: the rules see its two parts in turn, so a model keeps the merged tokens its
tokenizer gave it in training (before, `` (`` was masked and no slur was ever written). Everything else is
masked in the body: merges that read differently apart (``|`` + ``|``), partial
units (a bare digit or ``/``, an accidental, an octave mark -- so a note's length can never be changed by
what follows it), quoted texts that are not chord names (fingerings, ``"D.C."``), annotations, invisible
and multi-bar rests (``x``, ``Z``), inline fields, header letters, control tokens. Notes are grouped by
length (and, for the rules that read pitches -- ties, cadence -- by pitch).

**Rules** (``rules/``, one module each, each with its own tests): ``bar_length`` (every bar exactly full,
the pickup exactly ``pickup``; tuplet and broken-rhythm notes scaled exactly, grace notes counting
nothing, a chord once), ``end`` (the final bar line, when EOS may come), one structure rule --
``repeats`` (free mode), ``form`` (``form="AABB"``) or ``template`` (``bar_lines``, the bar lines of voice
1 for later voices) --, ``layout`` (spaces, newlines, no ``A:`` at a line start) or ``beams`` (the
constraint writes the spaces at the meter's beat groups and a line every 4 bars), ``budget`` (the tune
always ends within ``max_new_tokens``; the fewest tokens to finish are known at every step), the idiom
rules (``broken``, ``tuplets``, ``ties``, ``grace``, ``decorations``, ``slurs``, ``chord_symbols``,
``chords``, with ``order``: what may stand before a note) and ``cadence`` (the tune ends on the tonic).
``recurrence.py`` (``AbcConstraint(recurrence=True)``, on in the pipeline's idiom grammar) replays earlier
bars where phrases answer (bars 5-6 of a part repeat 1-2) and sections return (``ABAC``).
``DEFAULT_RULES`` has them all; ``LEGACY_RULES`` is the grammar before the idioms. ``idioms_in_corpus``
measures which idioms a training corpus uses, and ``AbcConstraint(idioms=...)`` keeps those. The theory
prior (``tonality.py``: a corpus's pitch profile per mode and note lengths per rhythm) is the weighted rule
``prior`` (``AbcConstraint(pitch_prior=..., length_prior=...)``). ``melody.py``
(``AbcConstraint(unison_penalty=..., interval_prior=...)``) takes logits off a note that repeats the melody
note before it and weighs each melodic step by the corpus's interval profile of the requested rhythm; both
depend on the notes before, which the cached decisions do not, so the constraint adds them to their bonus.
Their module docstrings give the exact grammar; ``timing.py`` the beats and the fill tables.

**The rule interface** (``rules/base.py``). A ``Rule`` is bound once to the settings (``bind``: check
them, precompute tables), writes its fields of the start ``State`` (``start``), and for a state ``s``
and a candidate ``Unit`` (tokens the rules cannot tell apart: a note of one length, a bar line text, a
space...) answers in ``step(s, ns, unit)``: ``OFFER`` (this rule brings the unit in), ``PASS`` (no
objection) or ``REFUSE``, writing into ``ns`` what the unit changes. A unit is allowed when no enabled
rule refuses it, at least one offers it, and (budget rule) the tune can still finish after it. Each
rule adds its ``finish_cost(s)`` (tokens only it still needs) to the fewest tokens to finish, so the
budget stays exact, and reports in ``key(s)`` the part of the state its answers depend on: masks are
built once per key and capped budget slack and shared by all constraints of the same settings.

**Adding a rule**: teach ``parse_unit``/``MusicVocabulary`` the new unit class if the rule brings in new
tokens, write a ``Rule`` subclass in ``rules/`` (its state fields in ``State`` and ``State.copy``, its
``needs``/``pitched``/grid settings), register it in ``rules.RULES`` and ``OPTIONAL`` (switched with
``AbcConstraint(rules=...)``), and give it a ``tests/test_grammar_<rule>.py``; the random-walk tests
(``tests/test_grammar_walks.py``: our checker and abc2midi) and the cached-vs-fresh mask test must still
pass with it on. **Weighted rules** (``Rule.weight``) add a logit bonus instead of masking
(``AbcConstraint.bonus``; ``AbcLogitsProcessor`` adds it to the notes and keeps their total probability,
``processor.weigh``: a weighted rule decides which note, not whether a note comes).

**Errors** (``errors.py``): settings the grammar refuses raise ``GrammarConfigError`` subclasses (all
``ConfigError``s): ``BudgetTooSmallError`` (with ``budget`` and ``needed``), ``FormError``,
``BarTemplateError``/``UnclosedRepeatError``, ``VocabularyError``, ``UnknownRuleError``; a token fed
that is not allowed raises ``ConstraintViolation``.

Layering: this package sits above ``abcgen.notation`` and tokenization and below ``abcgen.generation``;
it imports nothing from generation, training, evaluation or hub.
"""

from __future__ import annotations

from abcgen.grammar.constraint import AbcConstraint, Grammar
from abcgen.grammar.errors import (
    BarTemplateError,
    BudgetTooSmallError,
    ConstraintViolation,
    FormError,
    GrammarConfigError,
    GrammarError,
    UnclosedRepeatError,
    UnknownRuleError,
    VocabularyError,
)
from abcgen.grammar.idioms import IDIOMS, MIN_IDIOM_SHARE, idioms_from_shares, idioms_in_corpus
from abcgen.grammar.processor import AbcLogitsProcessor
from abcgen.grammar.rules import (
    CORE,
    DEFAULT_RULES,
    LEGACY_RULES,
    OFFER,
    OPTIONAL,
    PASS,
    REFUSE,
    RULES,
    Rule,
    parse_form,
)
from abcgen.grammar.state import State
from abcgen.grammar.vocabulary import (
    MusicVocabulary,
    Unit,
    bar_template,
    music_vocabulary,
    parse_unit,
    split_bar_line,
)

__all__ = ["CORE", "DEFAULT_RULES", "IDIOMS", "LEGACY_RULES", "MIN_IDIOM_SHARE", "OFFER", "OPTIONAL", "PASS", "REFUSE", "RULES", "AbcConstraint", "AbcLogitsProcessor", "BarTemplateError",
           "BudgetTooSmallError", "ConstraintViolation", "FormError", "Grammar", "GrammarConfigError",
           "GrammarError", "MusicVocabulary", "Rule", "State", "UnclosedRepeatError", "Unit", "UnknownRuleError",
           "VocabularyError", "bar_template", "idioms_from_shares", "idioms_in_corpus", "music_vocabulary", "parse_form", "parse_unit", "split_bar_line"]
