"""abcgen listen: prepare a study from real tunes, serve it, answer it in a real headless Chromium (keyboard
only for one trial, a reload resuming), 12 raters at once over loopback, analysis of a synthetic study
with a known answer, exports."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import wave
from pathlib import Path

import pytest
from browser_helpers import (
    DESKTOP,
    PHONE,
    abcgen_server,
    chromium,
    require_browser,
    resources_outside,
    screenshot_dir,
    tab_to,
)

from abcgen.errors import ConfigError
from abcgen.listen import store
from abcgen.listen.analyse import analyse_answers, analyse_study
from abcgen.listen.export import export_study
from abcgen.listen.prepare import REAL, PrepareSettings, load_study, prepare_study
from abcgen.listen.serve import RATING_SCALES, serve_in_thread, trial_questions


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory, real_tunes: list[str]) -> Path:
    """A 6-trial study through the command line: 2 "generated" tunes (O'Neill's, standing in for a model's:
    prepare treats every file alike) and 1 real tune (Ryan's): 1 A/B pair, 3 ratings, 2 attention checks."""
    folder = tmp_path_factory.mktemp("listen")
    (folder / "gen.abc").write_text("\n\n".join(real_tunes[:2]), encoding="utf-8")
    (folder / "real.abc").write_text(real_tunes[150], encoding="utf-8")
    run = subprocess.run([sys.executable, "-m", "abcgen.cli", "listen", "prepare", "--generated", "gen.abc", "--real",
                          "real.abc", "--out", "study", "--bars", "4"], cwd=folder, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "3 clips, 6 trials" in run.stdout
    return folder / "study"


@pytest.mark.slow  # study_dir: a real `abcgen listen prepare` process rendering audio (~2.5 s), as in the others
def test_prepare_writes_balanced_blind_trials_of_equal_length(study_dir: Path) -> None:
    study = load_study(study_dir)
    assert [t["type"] for t in study["trials"]].count("ab") == 1
    assert sorted(t["type"] for t in study["trials"]) == ["ab", "attention", "attention", "rating", "rating", "rating"]
    for clip_id, clip in study["clips"].items():
        assert clip["file"] == f"clips/{clip_id}.wav" and clip["bars"] == 4
        with wave.open(str(study_dir / clip["file"])) as w:
            audio_length = w.getnframes() / w.getframerate()  # seconds of music in the file, not a timing
        assert abs(audio_length - clip["seconds"]) < 0.01 and 1 < audio_length < 20
        assert "%%MIDI" not in clip["abc"] and "\nQ:" in clip["abc"]
    attention = [t for t in study["trials"] if t["type"] == "attention"]
    assert all(t["a"] == t["b"] and study["clips"][t["a"]]["system"] == REAL for t in attention)


def test_prepare_refuses_bad_input_before_rendering(tmp_path: Path, real_tunes: list[str]) -> None:
    (tmp_path / "real.abc").write_text(real_tunes[0], encoding="utf-8")
    with pytest.raises(ConfigError, match="does not exist"):
        prepare_study(PrepareSettings(generated={"generated": tmp_path / "nope.abc"}, real=tmp_path / "real.abc",
                                      out=tmp_path / "s"))
    with pytest.raises(ConfigError, match="bars=0"):
        prepare_study(PrepareSettings(generated={"generated": tmp_path / "real.abc"}, real=tmp_path / "real.abc",
                                      out=tmp_path / "s", bars=0))
    assert not (tmp_path / "s").exists()


def test_answers_are_insert_only_and_a_rater_resumes(tmp_path: Path) -> None:
    db = store.init_db(tmp_path / "a.sqlite")
    rater = store.new_rater(db, ["t1", "t2", "t3"], plays_instrument=True, years=3)
    first, done, total = store.progress(db, rater)
    assert (done, total) == (0, 3)
    store.add_answers(db, rater, first, {"play": "A"})
    store.add_answers(db, rater, first, {"play": "B"})  # a resubmission: a second row, the first kept
    second, done, _ = store.progress(db, rater)
    assert done == 1 and second != first
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="insert-only"):
            conn.execute("UPDATE answers SET value = 'B'")
        with pytest.raises(sqlite3.DatabaseError, match="insert-only"):
            conn.execute("DELETE FROM answers")
    assert [a["value"] for a in store.read_all(db)[1]] == ["A", "B"]


def _post(url: str, data: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode(), method="POST")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


@pytest.mark.slow
def test_twelve_raters_at_once_lose_no_answer(study_dir: Path, tmp_path: Path) -> None:
    """12 threads, each a rater, post answers to the real server as fast as it answers for 4 seconds; every
    acknowledged answer (303) is in SQLite and nothing else is."""
    import shutil

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder, ignore=shutil.ignore_patterns("answers.sqlite*"))
    study = load_study(folder)
    server = serve_in_thread(folder)
    acknowledged, failures, lock = [0], [], threading.Lock()
    stop = time.monotonic() + 4.0

    def rater(index: int) -> None:
        status, location = _post(server.url + "start", {"plays": "yes" if index % 2 else "no", "years": str(index)})
        assert status == 303, status
        rng = random.Random(index)
        # Bounded in count and time: at least 5 trials a rater however slow the machine, at most 200.
        sent = 0
        while sent < 5 or (time.monotonic() < stop and sent < 200):
            sent += 1
            trial = rng.choice(study["trials"])
            values = {q: rng.choice(valid) for q, valid in trial_questions(trial).items()}
            status, _ = _post(server.url.rstrip("/") + location + "/answer", {"trial": trial["id"], **values})
            with lock:
                if status == 303:
                    acknowledged[0] += len(values)
                else:
                    failures.append(status)

    try:
        threads = [threading.Thread(target=rater, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        server.shutdown()
        server.server_close()
    assert not failures
    raters, answers = store.read_all(folder / store.DB_FILE)
    assert len(raters) == 12 and acknowledged[0] >= 12 * 5  # every rater answered at least 5 trials
    assert len(answers) == acknowledged[0] == store.count_answers(folder / store.DB_FILE)
    print(f"12 raters, 4 s: {acknowledged[0]} answers acknowledged and stored")


def _synthetic(p_real: float, raters: int = 40, pairs: int = 20, seed: int = 0) -> tuple[dict, list, list]:
    """A study of ``pairs`` A/B trials and one attention check, answered by raters who choose the real tune
    with probability ``p_real``; raters 0-3 fail the attention check and answer the opposite."""
    rng = random.Random(seed)
    clips = {f"g{i}": {"system": "generated"} for i in range(pairs)} | {f"r{i}": {"system": REAL} for i in range(pairs)}
    trials = [{"id": f"t{i}", "type": "ab", "system": "generated", **({"a": f"r{i}", "b": f"g{i}"} if i % 2 else
                                                                       {"a": f"g{i}", "b": f"r{i}"})}
              for i in range(pairs)]
    trials += [{"id": "att", "type": "attention", "a": "r0", "b": "r0"}, {"id": "rate", "type": "rating", "clip": "g0"}]
    study = {"systems": ["generated", REAL], "clips": clips, "trials": trials}
    rater_rows, answers = [], []
    for r in range(raters):
        rater_id = f"rater{r}"
        rater_rows.append({"rater_id": rater_id, "plays_instrument": r % 2 == 0})
        careless = r < 4
        answers.append({"rater_id": rater_id, "trial_id": "att", "question": "same", "value": "no" if careless else "yes"})
        for t in trials[:pairs]:
            real_side = "A" if t["a"].startswith("r") else "B"
            chose_real = (rng.random() < p_real) != careless
            for q in ("play", "human"):
                answers.append({"rater_id": rater_id, "trial_id": t["id"], "question": q,
                                "value": real_side if chose_real else ("B" if real_side == "A" else "A")})
        for scale, _ in RATING_SCALES:
            answers.append({"rater_id": rater_id, "trial_id": "rate", "question": scale, "value": "4"})
    return study, rater_rows, answers


def test_analysis_recovers_a_known_preference_within_its_interval() -> None:
    study, raters, answers = _synthetic(0.7)
    results = analyse_answers(study, raters, answers)
    assert results["raters_failed_attention"] == 4 and results["raters_kept"] == 36
    for q in ("play", "human"):
        cell = results["preference"]["all"][f"generated/{q}"]
        assert cell["n"] == 36 * 20
        assert cell["low"] < 0.7 < cell["high"] and cell["high"] - cell["low"] < 0.08, cell
        assert cell["p_above_half"] > 0.999
        for group in ("plays an instrument", "does not play"):
            sub = results["preference"][group][f"generated/{q}"]
            assert sub["n"] == 18 * 20 and sub["low"] < 0.7 < sub["high"]
    rating = results["ratings"]["all"]["generated/overall"]
    assert rating["counts"] == [0, 0, 0, 36, 0] and rating["low"] < 4 < rating["high"] + 0.1
    # no preference: the interval holds 1/2; without the attention check the careless raters would pull it down
    null = analyse_answers(*_synthetic(0.5, seed=1))["preference"]["all"]["generated/play"]
    assert null["low"] < 0.5 < null["high"]


@pytest.mark.slow
def test_analyse_and_export_commands_on_a_served_study(study_dir: Path, tmp_path: Path) -> None:
    import shutil

    import yaml

    folder = tmp_path / "study"
    shutil.copytree(study_dir, folder, ignore=shutil.ignore_patterns("answers.sqlite*", "analysis", "export"))
    study = load_study(folder)
    db = store.init_db(folder / store.DB_FILE)
    for r in range(3):
        rater = store.new_rater(db, [t["id"] for t in study["trials"]], plays_instrument=bool(r), years=r)
        for trial in study["trials"]:
            values = {q: valid[0] for q, valid in trial_questions(trial).items()}
            store.add_answers(db, rater, trial["id"], values | ({"same": "yes"} if "same" in values else {}))
    run = subprocess.run([sys.executable, "-m", "abcgen.cli", "listen", "analyse", str(folder)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = (folder / "analysis" / "report.md").read_text()
    assert "3 raters; 3 kept" in report and "![preference.png](preference.png)" in report
    assert (folder / "analysis" / "ratings.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="overwrite"):  # a used analysis folder is not replaced silently
        analyse_study(folder)
    written = export_study(folder)
    config = yaml.safe_load((written["webmushra"] / "configs" / "abcgen_study.yaml").read_text())
    pages = config["pages"][1]
    assert pages[0] == "random" and {p["type"] for p in pages[1:]} == {"paired_comparison", "likert_single_stimulus"}
    for page in pages[1:]:
        for path in [page.get("reference"), *page["stimuli"].values()]:
            assert path is None or (written["webmushra"] / path).is_file()
    abx = (written["beaqlejs"] / "config" / "abcgen_abx.js").read_text()
    testsets = json.loads(abx.split("=", 1)[1].rstrip().rstrip(";"))["Testsets"]
    assert len(testsets) == 1 and set(testsets[0]["Files"]) == {"A", "B"}
    key = json.loads((folder / "export" / "key.json").read_text())
    assert {v["system"] for v in key.values()} == {"generated", REAL}


# --- in the browser ---------------------------------------------------------------------------------------------


def _keyboard(driver, *keys: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def _answer_by_mouse(driver, rng: random.Random) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    for fieldset in driver.find_elements(By.CSS_SELECTOR, "form fieldset"):
        options = fieldset.find_elements(By.CSS_SELECTOR, "label")
        rng.choice(options).click()
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()


def _expect(driver, heading: str) -> None:  # noqa: ANN001
    """Wait until the page (after a navigation) has this ``h1``."""
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d) -> bool:  # noqa: ANN001
        try:
            return d.find_element(By.TAG_NAME, "h1").text == heading
        except WebDriverException as exc:
            # Chromium answers "unhandled inspector error ... Cannot find context" when the page navigates
            # (a form was just submitted) between finding the heading and reading it: look again
            if "inspector error" in str(exc):
                return False
            raise

    try:
        WebDriverWait(driver, 30, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(seen)
    except TimeoutException:
        raise AssertionError(f"expected the page {heading!r}; got {driver.page_source[-1500:]}") from None


@pytest.mark.slow
def test_a_rater_completes_six_trials_in_chromium_by_keyboard_and_mouse_and_resumes(study_dir: Path,
                                                                                       tmp_path: Path) -> None:
    require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    shots = screenshot_dir(tmp_path)
    with abcgen_server(["listen", "serve", str(study_dir), "--port", "0"], cwd=tmp_path) as url, chromium(DESKTOP) as driver:
        driver.get(url)
        _expect(driver, "Listening test")
        driver.save_screenshot(str(shots / "listen_welcome_desktop.png"))
        # keyboard only: the profile, then the whole first trial
        tab_to(driver, "input[name=plays][value=yes]")
        _keyboard(driver, Keys.SPACE)
        tab_to(driver, "input#years")
        _keyboard(driver, Keys.CONTROL, "a", Keys.NULL, "7")
        tab_to(driver, "button[type=submit]")
        _keyboard(driver, Keys.ENTER)
        _expect(driver, "Trial 1 of 6")
        rater_page = driver.current_url
        rater_id = rater_page.rstrip("/").rsplit("/", 1)[1]
        driver.save_screenshot(str(shots / "listen_trial_desktop.png"))
        for fieldset in driver.find_elements(By.CSS_SELECTOR, "form fieldset"):
            first = fieldset.find_element(By.CSS_SELECTOR, "input[type=radio]")
            tab_to(driver, f"input[name={first.get_attribute('name')}]")
            _keyboard(driver, Keys.SPACE)
            assert driver.execute_script("return document.activeElement.checked")
        tab_to(driver, "button[type=submit]")
        _keyboard(driver, Keys.ENTER)
        _expect(driver, "Trial 2 of 6")
        rng = random.Random(0)
        for n in (2, 3):
            _expect(driver, f"Trial {n} of 6")
            audio = driver.find_elements(By.TAG_NAME, "audio")
            sources = [a.get_attribute("src") for a in audio]
            assert sources and all(src.startswith(url + "clips/c") for src in sources)
            _answer_by_mouse(driver, rng)
        driver.get(rater_page)  # a reload (or coming back later) resumes at the first unanswered trial
        _expect(driver, "Trial 4 of 6")
        driver.get(url)  # the start page offers the way back (cookie)
        driver.find_element(By.LINK_TEXT, "Continue where you left off").click()
        _expect(driver, "Trial 4 of 6")
        # an incomplete answer is refused with a message, nothing stored
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()  # browser validation blocks it
        _expect(driver, "Trial 4 of 6")
        for n in (4, 5, 6):
            _expect(driver, f"Trial {n} of 6")
            _answer_by_mouse(driver, rng)
        _expect(driver, "Thank you")
        assert resources_outside(driver, url) == []
        with urllib.request.urlopen(sources[0]) as response:
            assert response.headers["Content-Type"] == "audio/wav" and response.read(4) == b"RIFF"
    with chromium(PHONE) as phone, abcgen_server(["listen", "serve", str(study_dir), "--port", "0"], cwd=tmp_path) as url:
        phone.get(url)
        phone.save_screenshot(str(shots / "listen_welcome_phone.png"))
        phone.find_element(By.CSS_SELECTOR, "input[name=plays][value=no]").click()
        phone.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        _expect(phone, "Trial 1 of 6")
        width = phone.execute_script("return document.documentElement.scrollWidth")
        assert width <= PHONE[0], f"the trial page scrolls sideways on a phone ({width} px)"
        phone.save_screenshot(str(shots / "listen_trial_phone.png"))
    raters, answers = store.read_all(study_dir / store.DB_FILE)
    mine = [a for a in answers if a["rater_id"] == rater_id]
    study = load_study(study_dir)
    assert {a["trial_id"] for a in mine} == {t["id"] for t in study["trials"]}
    expected = sum(len(trial_questions(t)) for t in study["trials"])
    assert len(mine) == expected
    assert next(r for r in raters if r["rater_id"] == rater_id)["years"] == 7
