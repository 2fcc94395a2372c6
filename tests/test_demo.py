"""abcgen demo: the Gradio page, run as the user runs it (``abcgen demo --model DIR``) on a tiny untrained
model, driven in a real headless Chromium that cannot reach any host but 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import (
    DESKTOP,
    PHONE,
    abcgen_server,
    chromium,
    free_port,
    require_browser,
    resources_outside,
    screenshot_dir,
    tab_to,
)
from tiny_models import tiny_music_model_folder

from abcgen.demo import bar_rows, opening_bars


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_music_model_folder(tmp_path_factory.mktemp("demo") / "model")


def test_opening_bars_keeps_the_first_bars_of_a_tune_or_of_typed_bars(real_tunes: list[str]) -> None:
    assert opening_bars("dAF DFA|d2f e2d|cBA B2c|d3 d3|", 2) == "dAF DFA|d2f e2d|"
    first = opening_bars(real_tunes[0], 4)
    assert first.count("|") >= 4 and "K:" not in first


def test_bar_rows_show_each_bar_and_its_check() -> None:
    rows = bar_rows([{"index": 1, "duration": "3/4", "meter": "3/4", "ok": True},
                     {"index": 2, "duration": "5/8", "meter": "3/4", "ok": False}])
    assert rows == [[1, "3/4", "3/4", "ok"], [2, "5/8", "3/4", "wrong length"]]


@pytest.mark.slow
def test_demo_generates_a_tune_and_shows_sheet_audio_and_bar_check_offline(model_dir: Path, tmp_path: Path) -> None:
    require_browser()
    pytest.importorskip("gradio")
    import gradio
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    shots = screenshot_dir(tmp_path)
    port = free_port()
    with abcgen_server(["demo", "--model", str(model_dir), "--port", str(port)], cwd=tmp_path) as url:
        with chromium(DESKTOP) as driver:
            driver.get(url)
            button = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "generate"))
            driver.save_screenshot(str(shots / "demo_desktop_empty.png"))
            button.click()
            image = WebDriverWait(driver, 180).until(lambda d: d.find_element(By.CSS_SELECTOR, "#sheet img"))
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "const i = document.querySelector('#sheet img'); return i && i.complete && i.naturalWidth > 0"))
            assert image.get_attribute("alt")
            # Gradio's player: a waveform player (wavesurfer) of the WAV served by this server, with its length
            source = WebDriverWait(driver, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#audio a[download]"))
            assert source.get_attribute("href").startswith(url) and source.get_attribute("href").endswith(".wav")
            duration = WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "const t = document.querySelector('#audio #duration'); return t && t.textContent !== '0:00' && "
                "t.textContent"))
            assert ":" in duration
            downloads = driver.find_elements(By.CSS_SELECTOR, "#downloads a")
            names = " ".join(a.text + " " + (a.get_attribute("href") or "") for a in downloads)
            assert all(ext in names for ext in (".abc", ".mid", ".wav")), names
            check = driver.find_element(By.ID, "bars-check").text
            assert "ok" in check and "wrong length" not in check
            assert "Every bar checks out" in driver.find_element(By.ID, "status").text
            abc = driver.find_element(By.ID, "abc").text
            assert "K:" in abc
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(shots / "demo_desktop.png"))
            outside = resources_outside(driver, url)
            assert outside == [], f"the page loaded assets from elsewhere: {outside}"
            # the page's scripts are the installed gradio package's own files
            scripts = driver.execute_script("return [...document.scripts].map(s => s.src).filter(Boolean)")
            frontend = Path(gradio.__file__).parent / "templates" / "frontend"
            for src in scripts:
                assert src.startswith(url)
                relative = src[len(url):].split("?")[0]
                if relative.startswith("assets/"):
                    assert (frontend / relative).is_file(), src
        with chromium(PHONE) as phone:
            phone.get(url)
            WebDriverWait(phone, 60).until(lambda d: d.find_element(By.ID, "generate"))
            tab_to(phone, "#generate")  # by keyboard: Tab to the button, Enter
            ActionChains(phone).send_keys(Keys.ENTER).perform()
            WebDriverWait(phone, 180).until(lambda d: d.find_element(By.CSS_SELECTOR, "#sheet img"))
            WebDriverWait(phone, 60).until(lambda d: d.find_element(By.CSS_SELECTOR, "#audio a[download]"))
            width = phone.execute_script("return document.documentElement.scrollWidth")
            assert width <= PHONE[0] + 1, f"the demo scrolls sideways on a phone ({width} px)"
            phone.execute_script("document.getElementById('sheet').scrollIntoView()")
            phone.save_screenshot(str(shots / "demo_phone.png"))
    assert os.environ.get("GRADIO_ANALYTICS_ENABLED") in (None, "False")
