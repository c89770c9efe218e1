"""Screenshot a site written by `evalkit view` in headless Chromium (Debian's chromium + chromium-driver).

    python scripts/screenshot_site.py SITE/index.html OUT.png [--section episodes] [--width 1280 --height 900]

Waits for the episode browser and for the player's video to show a frame (half-way through it)."""

import argparse
import shutil
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("page")
    parser.add_argument("out")
    parser.add_argument("--section", help="scroll to this section first (runs, per-task, compare, episodes, sweeps)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={args.width},{args.height}"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(Path(args.page).resolve().as_uri())
        if browser.execute_script("return !!document.getElementById('player') && !!document.getElementById('player').src"):
            WebDriverWait(browser, 20).until(lambda d: d.execute_script(
                "return document.getElementById('player').readyState >= 2"))
            browser.execute_script("const v = document.getElementById('player'); v.currentTime = v.duration / 2")
            time.sleep(1.0)
        if args.section:
            browser.execute_script("document.getElementById(arguments[0]).scrollIntoView()", args.section)
            time.sleep(0.3)
        browser.save_screenshot(args.out)
    finally:
        browser.quit()
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
