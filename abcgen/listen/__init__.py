"""A blind listening test of generated against real tunes, run in the browser.

    abcgen listen prepare --generated A.abc --real B.abc [--generated-2 C.abc] --out STUDY/
    abcgen listen serve STUDY/ --port 8000        # raters open http://HOST:8000/
    abcgen listen analyse STUDY/                  # STUDY/analysis/report.md, results.json, plots
    abcgen listen export STUDY/ --to webmushra,beaqlejs

* :mod:`abcgen.listen.prepare` renders every tune with one soundfont and one tempo per rhythm, cuts each
  clip to the same number of bars, and writes ``study.json`` with balanced, randomised trials.
* :mod:`abcgen.listen.store` keeps every answer in SQLite (insert-only, WAL, one connection per request).
* :mod:`abcgen.listen.serve` serves the rater pages (plain HTML forms: no script, no external asset).
* :mod:`abcgen.listen.analyse` estimates preference rates and mean ratings with Bayesian credible intervals.
* :mod:`abcgen.listen.export` writes the study as webMUSHRA and BeaqleJS configurations.
"""
