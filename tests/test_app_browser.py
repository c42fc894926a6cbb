"""The web page end to end in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``).

``nested-inverse serve`` runs in a subprocess on a free localhost port; Selenium, pointed at
``/usr/bin/chromedriver`` and ``/usr/bin/chromium`` (so Selenium Manager never looks for or
downloads anything), uploads a bundled image, runs a long nested restoration, presses Stop, and
checks that the page says it stopped early with the result and the downloads shown. A screenshot
goes to the test's temporary folder, or to ``$NI_APP_SCREENSHOT`` when set (the README's picture).
Skipped, with the reason, where Chromium, its driver, Gradio or Selenium is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

for _module in ("gradio", "selenium"):
    pytest.importorskip(_module, reason=f"{_module} is not installed (pip install -e '.[test]')")
if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
    pytest.skip(f"no {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False",
           "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nested_inverse", "serve", "--port",
                                 str(port), "--device", "cpu"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield url, log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1500"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def set_number(driver, elem_id: str, value: int) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


def status(driver) -> str:
    return driver.find_element(By.ID, "status").text


def body(driver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def downloads(driver) -> str:
    """The file list's text, each name whole (the page sets the extension apart)."""
    return driver.find_element(By.ID, "downloads").get_attribute("innerText").replace("\n.", ".")


def upload_file(driver, wait, path: Path) -> None:
    """Upload ``path``; a file already in the box is cleared first (its × button), as a user
    replaces one."""
    for clear in driver.find_elements(By.CSS_SELECTOR, "#upload button[aria-label='Clear']"):
        clear.click()
    box = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#upload input[type=file]")))
    box.send_keys(str(path))


def test_upload_run_with_defaults_stop_shows_the_result(server, browser, tmp_path):
    """The user's path, no number typed: upload, Run with the page's defaults (the automatic K×I
    split, no budget, no deadline), Stop after the first step, the result and the downloads."""
    wait = WebDriverWait(browser, 120)
    browser.get(server[0])
    upload_file(browser, wait, ROOT / "data" / "images" / "coffee.png")
    # The upload handler puts the image on the painting canvas.
    wait.until(lambda d: "600×400 pixels" in d.find_element(By.TAG_NAME, "body").text)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: re.search(r"running: step \d", status(d)) or "rror" in body(d))
    assert "rror" not in body(browser) and "minimum" not in body(browser), body(browser)[-1000:]
    browser.find_element(By.ID, "stop").click()
    wait.until(lambda d: re.match(r"(stopped|finished)", status(d)))
    line = status(browser)
    assert line.startswith("stopped"), line  # Stop lands before the default run ends
    stopped_at, nfe = map(int, re.search(r"step (\d+) · (\d+) NFE", line).groups())
    assert stopped_at >= 1 and nfe > 0 and nfe % stopped_at == 0, line  # k·I evaluations
    image = browser.find_element(By.CSS_SELECTOR, "#result img")
    assert image.get_attribute("src") and image.size["width"] > 50
    label = browser.find_element(By.ID, "result").text
    assert f"step {stopped_at}" in label, label
    # y · restoration · reference side by side at one scale, and the restored window named.
    shown = {e: browser.find_element(By.CSS_SELECTOR, f"#{e} img").size
             for e in ("observed", "result", "reference")}
    assert len({(v["width"], v["height"]) for v in shown.values()}) == 1, shown
    # The defaults restore the whole photo downscaled to the max side (256): 600×400 → 256×171,
    # cropped to 256×168 for SR×4, so y is 64×42.
    assert "Observation y (64×42)" in browser.find_element(By.ID, "observed").text
    assert ("the whole photo, downscaled to 256×168"
            in browser.find_element(By.ID, "photo").text)
    estimate = browser.find_element(By.ID, "estimate").text
    assert re.match(r"Restores 256×168 pixels in about \d+ (s|min) \(20 NFE", estimate), estimate
    wait.until(lambda d: "coffee.json" in downloads(d))
    listed = downloads(browser).split()
    assert {"coffee.png", "coffee_y.png", "coffee_steps.png", "coffee.json"} <= set(listed), listed
    browser.execute_script("window.scrollTo(0, 0)")
    shot = Path(os.environ.get("NI_APP_SCREENSHOT", tmp_path / "page.png"))
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_a_bad_upload_clears_the_source_and_run_restores_nothing(server, browser, tmp_path):
    """A good photo, then a file that is not an image: the page says so (naming the field and
    the file, no server path), the canvas is emptied, and Run is refused, restoring nothing."""
    url, log = server
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    wait = WebDriverWait(browser, 60)
    browser.get(url)
    upload_file(browser, wait, ROOT / "data" / "images" / "coffee.png")
    wait.until(lambda d: "600×400 pixels" in status(d))
    assert browser.find_elements(By.CSS_SELECTOR, "#canvas canvas, #canvas img")
    before = log.read_text().count("refused")
    upload_file(browser, wait, bad)
    wait.until(lambda d: "is not an image" in status(d))
    line = status(browser)
    assert "'Upload an image' 'notes.png'" in line and "No image is loaded" in line, line
    assert "/tmp" not in body(browser) and "Traceback" not in body(browser)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: status(d).startswith("Not run"))
    line = status(browser)
    assert "'Upload an image': no image given" in line and "notes.png" not in line, line
    time.sleep(2)  # a run, had one started, would have shown A†y by now
    assert not browser.find_elements(By.CSS_SELECTOR, "#result img"), "something was restored"
    text = log.read_text()
    assert text.count("refused") == before + 2 and "Traceback" not in text, text[-2000:]


def test_a_closed_tab_stops_its_run(server, browser):
    url, log = server
    wait = WebDriverWait(browser, 60)
    browser.get(url)
    wait.until(ec.presence_of_element_located((By.ID, "example")))
    browser.find_element(By.CSS_SELECTOR, "#example input").send_keys("coffee", Keys.ENTER)
    wait.until(lambda d: "coffee.png: 600×400 pixels" in d.find_element(By.TAG_NAME, "body").text)
    set_number(browser, "outer", 200)  # a long run, still going when the tab closes
    set_number(browser, "inner", 4)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "running: step" in status(d))
    before = log.read_text().count("a tab closed; its run was stopped")
    browser.get("about:blank")  # the tab leaves the page: Gradio's heartbeat ends, then unload
    deadline = time.monotonic() + 30
    while log.read_text().count("a tab closed; its run was stopped") == before:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)
