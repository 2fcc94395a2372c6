"""Headless Chromium for the browser tests: Debian's ``chromium`` and ``chromium-driver`` (installed by
scripts/install.sh) driven by selenium; nothing is downloaded. Servers run as the user runs them: a real
``abcgen ...`` subprocess on 127.0.0.1, its URL read from its first line of output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)  # a phone's CSS width

def screenshot_dir(tmp_path: Path) -> Path:
    """``$ABCGEN_SCREENSHOT_DIR`` when set (benchmarks/results/screenshots/ for the README), else tmp_path."""
    folder = Path(os.environ.get("ABCGEN_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder

def require_browser() -> None:
    pytest.importorskip("selenium", reason="pip install 'abcgen[dev]'")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: run scripts/install.sh (apt-get install chromium "
                    "chromium-driver)")

@contextmanager
def chromium(size: tuple[int, int] = DESKTOP) -> Iterator:
    """A headless Chromium that cannot resolve any host but 127.0.0.1: a page that tried to load an asset
    from the internet would fail visibly (and the tests check the page's resource list too)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--mute-audio", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 f"--window-size={size[0]},{size[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    # a desktop window cannot be made narrower than about 500 px: a phone's width is emulated instead
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1],
                                                                  "deviceScaleFactor": 1, "mobile": size[0] < 600})
    try:
        yield driver
    finally:
        driver.quit()

def tab_to(driver, selector: str, limit: int = 40) -> None:  # noqa: ANN001
    """Press Tab until the focused element matches ``selector`` (the page's focus order reaches it)."""
    import json

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(limit):
        if driver.execute_script(f"return document.activeElement.matches({json.dumps(selector)})"):
            return
        ActionChains(driver).send_keys(Keys.TAB).perform()
    raise AssertionError(f"Tab never reached {selector}")

def resources_outside(driver, base: str) -> list[str]:  # noqa: ANN001
    """URLs the page loaded from anywhere but ``base`` (the loopback server)."""
    names = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not (n.startswith(base) or n.startswith("data:") or n.startswith("blob:"))]

@contextmanager
def abcgen_server(args: list[str], cwd: Path, timeout: float = 180) -> Iterator[str]:
    """Run ``abcgen ARGS`` (a server) until the block ends; yield the URL it prints."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    exe = shutil.which("abcgen", path=str(Path(sys.executable).parent)) or "abcgen"
    proc = subprocess.Popen([exe, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + timeout
        url = None
        while url is None:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"abcgen {' '.join(args)} exited: {''.join(lines)[-3000:]}")
            lines.append(line)
            if match := re.search(r"(http://127\.0\.0\.1:\d+/)", line):
                url = match.group(1)
            assert time.monotonic() < deadline, "".join(lines)[-3000:]
        for _ in range(200):  # the URL is printed just before the server accepts connections
            try:
                urllib.request.urlopen(url, timeout=5).read()
                break
            except OSError:
                time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
