"""Open an HTML file in headless Chromium: console errors, the DOM after the scripts ran, a screenshot.

Used by the tests and by `timeloom inspect report --check`. Chromium is Debian's `chromium`
package (or `chromium-browser` / `google-chrome`); nothing is fetched from the network: the
page is a file:// URL and background networking is switched off.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
# every console message counts: the pages timeloom writes log nothing, and headless Chromium's log
# does not keep the level ("INFO:CONSOLE:12] \"Uncaught ReferenceError ...\"" or, older, CONSOLE(12))
CONSOLE = re.compile(r"(:CONSOLE[:(]|Uncaught|Failed to load resource)")


@dataclass
class Page:
    dom: str = ""
    console_errors: list = field(default_factory=list)
    screenshot: Path | None = None
    log: str = ""


def find() -> str | None:
    for n in NAMES:
        path = shutil.which(n)
        if path:
            return path
    return None


def _run(args: list, timeout: float) -> subprocess.CompletedProcess:
    exe = find()
    if exe is None:
        raise FileNotFoundError("no headless browser: install Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="timeloom-chromium-") as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=False)


def console_errors(log: str) -> list[str]:
    """The console messages (and uncaught exceptions) in Chromium's stderr log."""
    return [line.strip() for line in log.splitlines() if CONSOLE.search(line)]


def open_page(html_file, screenshot=None, size=(1400, 2000), timeout: float = 90) -> Page:
    """Load the page twice: once dumping the DOM after its scripts ran, once for the screenshot
    (when asked); console errors of both loads are collected from Chromium's log."""
    url = Path(html_file).resolve().as_uri()
    dump = _run(["--virtual-time-budget=3000", "--dump-dom", url], timeout)
    page = Page(dom=dump.stdout, log=dump.stderr)
    if screenshot is not None:
        shot = Path(screenshot).resolve()
        res = _run([f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}", url], timeout)
        page.log += res.stderr
        page.screenshot = shot if shot.exists() else None
    page.console_errors = console_errors(page.log)
    return page
