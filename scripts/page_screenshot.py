"""Write docs/service_page.png, the service's page (GET /) with a sentence translated on it, from a real server
and a real headless browser: Chromium from Debian's packages, driven by Selenium.

    apt-get install -y chromium chromium-driver && pip install -e '.[test]'    # the browser, selenium
    python scripts/page_screenshot.py runs/X/model.pt [--sentence "A dog runs."] [--prefix "Ein"] [--out docs/service_page.png]

tests/test_page.py drives the page with the same functions (chromium, wait_for, translate_on_page).
"""
import argparse
import base64
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.loadtest import running_server  # noqa: E402

INSTALL = "apt-get install -y chromium chromium-driver; pip install selenium"


def chromium(width: int = 1000, height: int = 800):
    """A headless Chromium (Debian's `chromium` and `chromedriver` on PATH) under Selenium; FileNotFoundError,
    naming what to install, when the browser, its driver or selenium is missing."""
    try:
        from selenium import webdriver
    except ImportError as e:
        raise FileNotFoundError(f"selenium is not installed ({INSTALL})") from e
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if browser is None or driver is None:
        raise FileNotFoundError(f"no chromium or chromedriver on PATH ({INSTALL})")
    options = webdriver.ChromeOptions()
    options.binary_location = browser  # given, with the driver's path, so that Selenium Manager downloads nothing
    # /dev/shm is small in containers, where Chromium's renderer would crash writing there
    for arg in ("--headless=new", f"--window-size={width},{height}", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox refuses to start as root
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def wait_for(page, *states: str, timeout: float = 60) -> str:
    """The page's body[data-state] once it is one of `states` (page.html sets it); TimeoutException after `timeout` s."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def reached(driver) -> str | None:
        state = driver.find_element(By.TAG_NAME, "body").get_attribute("data-state")
        return state if state in states else None
    return WebDriverWait(page, timeout).until(reached)


def translate_on_page(page, sentence: str, prefix: str = "", timeout: float = 60) -> str:
    """Type `prefix` (none: left empty) and `sentence` into the page's boxes as a person would, press Enter: the
    state it ends in (done or error)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page.find_element(By.ID, "prefix").clear()
    page.find_element(By.ID, "prefix").send_keys(prefix)
    box = page.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence, Keys.ENTER)
    return wait_for(page, "done", "error", timeout=timeout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_file", help="the model file the server loads (its path shows on the page)")
    parser.add_argument("--sentence", default="A man in an orange hat is looking at a dog in the snow.")
    parser.add_argument("--prefix", default="", help="typed into the page's prefix box (default: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "service_page.png")
    args = parser.parse_args()
    try:
        page = chromium()
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    try:
        with tempfile.TemporaryDirectory() as tmp, \
                running_server([f"model_file={args.model_file}", "threads=1"], Path(tmp) / "serve.log", threads=1,
                               env={"SEQ2SEQ_API_KEY": ""}) as url:
            page.get(url)
            wait_for(page, "ready")
            if translate_on_page(page, args.sentence, args.prefix) != "done":
                sys.exit(f"error: the page did not translate: {page.find_element('id', 'status').text}")
            size = page.execute_script("const e = document.documentElement; return [e.scrollWidth, e.scrollHeight]")
            # the whole page, not the window's part of it (headless Chromium keeps the window at its start size)
            shot = page.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": {
                "x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
            args.out.write_bytes(base64.b64decode(shot["data"]))
    finally:
        page.quit()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
