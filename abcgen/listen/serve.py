"""``abcgen listen serve STUDY/``: the rater pages of a listening test, from Python's own HTTP server.

Plain HTML forms, no script and no external asset (nothing is fetched from another host): a page works
with a keyboard alone (native radio buttons in fieldsets with legends, labels around every control, a
visible focus ring, the tab order the reading order) and on a phone (one column, large targets).

    GET  /                    welcome and the rater profile form (a returning rater gets a link back)
    POST /start               profile -> a new rater with a trial order of their own -> their page
    GET  /r/RATER             the rater's next unanswered trial (or the thank-you page): reload resumes
    POST /r/RATER/answer      one trial's answers, stored in one transaction; redirects to the next trial
    GET  /clips/CLIP.wav      the audio (anonymous names: nothing tells generated from real)
    GET  /healthz             "ok" (for scripts waiting for the server)

Every request opens its own SQLite connection (:mod:`abcgen.listen.store`); the server handles requests
in threads, so a dozen raters answering at once are served and stored concurrently.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from abcgen.errors import ConfigError
from abcgen.listen import store
from abcgen.listen.prepare import CLIPS_DIR, duration_summary, load_study

log = logging.getLogger(__name__)

AB_QUESTIONS = (
    ("play", "Which would you rather play?", (("A", "A"), ("B", "B"))),
    ("human", "Which was written by a person?", (("A", "A"), ("B", "B"))),
    ("same", "Are A and B the same tune?", (("yes", "Yes, the same tune"), ("no", "No, different tunes"))),
)
RATING_SCALES = (("melody", "Melody"), ("rhythm", "Rhythm"), ("structure", "Structure"), ("overall", "Overall"))
RATING_LABELS = {1: "1 poor", 2: "2", 3: "3 fair", 4: "4", 5: "5 excellent"}
_MAX_FORM_BYTES = 10_000
_CLIP_RE = re.compile(r"^/clips/(c\d{1,6})\.wav$")
_RATER_RE = re.compile(r"^/r/([A-Za-z0-9_-]{8,40})(/answer)?$")

_CSS = """
:root { color-scheme: light; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
body { margin: 0; background: #f6f6f4; color: #1b1b1b; line-height: 1.5; }
main { max-width: 44rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 0 0 .4rem; }
.clips { display: grid; grid-template-columns: 1fr 1fr; gap: .75rem; }
.clip { background: #fff; border: 1px solid #c9c9c4; border-radius: .5rem; padding: .75rem; }
audio { width: 100%; }
fieldset { background: #fff; border: 1px solid #c9c9c4; border-radius: .5rem; margin: .9rem 0; padding: .6rem .9rem; }
legend { font-weight: 600; padding: 0 .3rem; }
.choices { display: flex; flex-wrap: wrap; gap: .5rem; }
.choices label { display: flex; align-items: center; gap: .4rem; min-height: 2.75rem; padding: .2rem .8rem;
  border: 1px solid #9a9a94; border-radius: .4rem; background: #fafaf8; cursor: pointer; }
.choices label:has(input:checked) { background: #dbe8ff; border-color: #1f4fb3; }
input[type=radio] { width: 1.2rem; height: 1.2rem; margin: 0; }
input[type=number] { font-size: 1rem; padding: .4rem; width: 6rem; }
button { font-size: 1.05rem; padding: .7rem 1.6rem; border-radius: .4rem; border: 0; background: #1f4fb3;
  color: #fff; cursor: pointer; min-height: 2.75rem; }
:focus-visible { outline: 3px solid #e07000; outline-offset: 2px; }
progress { width: 100%; height: .8rem; }
.note { color: #4a4a46; font-size: .95rem; }
.error { background: #ffe4e0; border: 1px solid #b3261e; padding: .6rem; border-radius: .4rem; }
@media (max-width: 30rem) { .clips { grid-template-columns: 1fr; } main { padding: .6rem; } }
"""


def _page(title: str, body: str) -> bytes:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{body}</main></body></html>").encode()


def _choices(name: str, legend: str, options: tuple[tuple[str, str], ...]) -> str:
    inputs = "".join(f'<label><input type="radio" name="{name}" value="{html.escape(v)}" required> '
                     f"{html.escape(text)}</label>" for v, text in options)
    return f'<fieldset><legend>{html.escape(legend)}</legend><div class="choices">{inputs}</div></fieldset>'


def _clip(label: str, clip_id: str) -> str:
    return (f'<section class="clip" aria-label="Tune {label}"><h2>Tune {label}</h2>'
            f'<audio controls preload="none" src="/clips/{clip_id}.wav">Your browser cannot play audio.</audio>'
            "</section>")


def trial_questions(trial: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """question name -> the values it accepts, for a trial type."""
    if trial["type"] == "rating":
        return {name: tuple(str(v) for v in RATING_LABELS) for name, _ in RATING_SCALES}
    return {name: tuple(v for v, _ in options) for name, _, options in AB_QUESTIONS}


def welcome_page(returning: str | None, summary: str, error: str = "") -> bytes:
    back = (f'<p><a href="/r/{html.escape(returning)}">Continue where you left off</a></p>' if returning else "")
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page("Listening test", f"""
<h1>Listening test</h1>
<p>You will hear short tunes, one or two at a time, and answer a few questions about each. Some were
written by people and some by a computer; you are not told which. Use headphones if you can.
Your answers are saved as you go: you can stop and come back to this page later.</p>
<p class="note">{html.escape(summary)}</p>{back}{problem}
<form method="post" action="/start">
{_choices("plays", "Do you play a musical instrument (or sing)?", (("yes", "Yes"), ("no", "No")))}
<fieldset><legend>Years of playing</legend>
<label for="years">Years (0 if you do not play)</label><br>
<input id="years" name="years" type="number" min="0" max="90" step="1" value="0" required inputmode="numeric">
</fieldset>
<button type="submit">Start</button>
</form>""")


def trial_page(rater_id: str, trial: dict[str, Any], position: int, total: int, error: str = "") -> bytes:
    problem = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    head = (f"<h1>Trial {position} of {total}</h1>"
            f'<progress max="{total}" value="{position - 1}" aria-label="Progress">{position - 1} of {total}'
            f"</progress>{problem}")
    if trial["type"] == "rating":
        intro = "<p>Listen to the tune, then rate it from 1 (poor) to 5 (excellent).</p>"
        clips = f'<div class="clips" style="grid-template-columns: 1fr">{_clip("", trial["clip"])}</div>'
        questions = "".join(_choices(name, label, tuple((str(v), t) for v, t in RATING_LABELS.items()))
                            for name, label in RATING_SCALES)
    else:
        intro = "<p>Listen to both tunes, then answer the three questions.</p>"
        clips = f'<div class="clips">{_clip("A", trial["a"])}{_clip("B", trial["b"])}</div>'
        questions = "".join(_choices(name, legend, options) for name, legend, options in AB_QUESTIONS)
    return _page(f"Trial {position} of {total}", f"""{head}{intro}{clips}
<form method="post" action="/r/{html.escape(rater_id)}/answer">
<input type="hidden" name="trial" value="{html.escape(trial['id'])}">
{questions}
<button type="submit">Next</button>
</form>""")


def done_page(total: int) -> bytes:
    return _page("Thank you", f"<h1>Thank you</h1><p>You answered all {total} trials. You can close this page.</p>")


class ListenHandler(BaseHTTPRequestHandler):
    """One request; the server holds the study (``server.study``, ``server.db``, ``server.folder``)."""

    server: ListenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- the base class's name
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect(self, location: str, cookie: str | None = None) -> None:
        headers = {"Location": location}
        if cookie:
            headers["Set-Cookie"] = f"rater={cookie}; Path=/; SameSite=Lax; HttpOnly; Max-Age=2592000"
        self._send(HTTPStatus.SEE_OTHER, b"", headers=headers)

    def _cookie_rater(self) -> str | None:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "rater" and re.fullmatch(r"[A-Za-z0-9_-]{8,40}", value) \
                    and store.rater(self.server.db, value) is not None:
                return value
        return None

    def do_HEAD(self) -> None:  # noqa: N802 -- http.server's naming
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(HTTPStatus.OK, welcome_page(self._cookie_rater(), self.server.summary))
        elif path == "/healthz":
            self._send(HTTPStatus.OK, b"ok", "text/plain")
        elif match := _CLIP_RE.match(path):
            file = self.server.folder / CLIPS_DIR / f"{match.group(1)}.wav"
            if match.group(1) not in self.server.study["clips"] or not file.is_file():
                self._send(HTTPStatus.NOT_FOUND, b"no such clip", "text/plain")
            else:
                self._send(HTTPStatus.OK, file.read_bytes(), "audio/wav")
        elif (match := _RATER_RE.match(path)) and not match.group(2):
            self._show_trial(match.group(1))
        else:
            self._send(HTTPStatus.NOT_FOUND, _page("Not found", '<h1>Not found</h1><p><a href="/">Start page</a></p>'))

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_FORM_BYTES:
            raise ValueError("form too large")
        data = self.rfile.read(length).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(data, keep_blank_values=True).items()}

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        try:
            form = self._form()
        except ValueError:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"form too large", "text/plain")
            return
        if path == "/start":
            self._start(form)
        elif (match := _RATER_RE.match(path)) and match.group(2):
            self._answer(match.group(1), form)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")

    def _start(self, form: dict[str, str]) -> None:
        plays, years = form.get("plays"), form.get("years", "")
        if plays not in ("yes", "no") or not years.isdigit() or int(years) > 90:
            self._send(HTTPStatus.BAD_REQUEST, welcome_page(None, self.server.summary,
                       "Please say whether you play an instrument, and give your years of playing (0 to 90)."))
            return
        rater_id = store.new_rater(self.server.db, [t["id"] for t in self.server.study["trials"]],
                                   plays_instrument=plays == "yes", years=int(years),
                                   user_agent=self.headers.get("User-Agent") or "")
        log.info("new rater %s (plays: %s, %s years)", rater_id, plays, years)
        self._redirect(f"/r/{rater_id}", cookie=rater_id)

    def _show_trial(self, rater_id: str, error: str = "", status: int = HTTPStatus.OK) -> None:
        try:
            next_id, done, total = store.progress(self.server.db, rater_id)
        except KeyError:
            self._send(HTTPStatus.NOT_FOUND, _page("Unknown rater", '<h1>Unknown rater</h1>'
                                                    '<p><a href="/">Start the test</a></p>'))
            return
        if next_id is None:
            self._send(HTTPStatus.OK, done_page(total))
            return
        self._send(status, trial_page(rater_id, self.server.trials[next_id], done + 1, total, error))

    def _answer(self, rater_id: str, form: dict[str, str]) -> None:
        info = store.rater(self.server.db, rater_id)
        if info is None:
            self._send(HTTPStatus.NOT_FOUND, b"unknown rater", "text/plain")
            return
        trial = self.server.trials.get(form.get("trial", ""))
        if trial is None or trial["id"] not in info["trial_order"]:
            self._send(HTTPStatus.BAD_REQUEST, b"unknown trial", "text/plain")
            return
        questions = trial_questions(trial)
        values = {q: form.get(q, "") for q in questions}
        if any(values[q] not in valid for q, valid in questions.items()):
            self._show_trial(rater_id, "Please answer every question before going on.", HTTPStatus.BAD_REQUEST)
            return
        store.add_answers(self.server.db, rater_id, trial["id"], values)
        self._redirect(f"/r/{rater_id}")


class ListenServer(ThreadingHTTPServer):
    """A threaded HTTP server bound to one study folder."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(self, folder: str | Path, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.folder = Path(folder)
        self.study = load_study(self.folder)
        self.trials = {t["id"]: t for t in self.study["trials"]}
        self.summary = duration_summary(self.study)
        self.db = store.init_db(self.folder / store.DB_FILE)
        try:
            super().__init__((host, port), ListenHandler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port") from exc

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def serve_in_thread(folder: str | Path, host: str = "127.0.0.1", port: int = 0) -> ListenServer:
    """Start a server in a daemon thread (for scripts and tests); stop it with ``server.shutdown()``."""
    server = ListenServer(folder, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
