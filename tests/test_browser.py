"""The validation report and the explain page, opened in headless Chromium.

The browser is driven over the DevTools protocol on ``--remote-debugging-pipe`` (file
descriptors 3 and 4, NUL-terminated JSON messages) with the standard library only. Each page is
loaded, every ``<img>`` is switched to eager loading and awaited, and the test checks that every
image decoded (``naturalWidth > 0``) and that the page logged no console error, no uncaught
exception and no failed resource. A full-page screenshot is saved (to ``$XECRECO_SCREENSHOTS``
when set, else the test's temporary folder).

Outside CI (``CI`` unset) the test skips when no Chromium is installed; under ``CI=true`` a
missing browser is a failure (.ci/run installs the Debian package ``chromium``).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from xecreco.cli.main import main

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60.0


def _browser() -> str:
    for name in BROWSERS:
        exe = shutil.which(name)
        if exe:
            return exe
    message = (f"no headless browser: none of {', '.join(BROWSERS)} is on PATH "
               "(install the Debian package: apt-get install chromium)")
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but {message}")
    pytest.skip(message)


class DevTools:
    """A Chromium process and its DevTools pipe (requests by id, events collected)."""

    def __init__(self, exe: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire():  # the browser reads commands on fd 3 and writes replies on fd 4
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             "--no-first-run", "--disable-extensions", "--allow-file-access-from-files",
             f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire, pass_fds=(3, 4, to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the process is killed below anyway
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DevTools message from the browser in time")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError("the browser closed its DevTools pipe")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = TIMEOUT_S) -> dict:
        self._next_id += 1
        request = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._to_browser, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method: str, session: str, timeout: float = TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method and event.get("sessionId") == session:
                return self.events.pop(i)
        while True:
            message = self._read_message(deadline)
            if message.get("method") == method and message.get("sessionId") == session:
                return message
            self.events.append(message)


_LOAD_ALL_IMAGES = """
Promise.all(Array.from(document.images).map(img => {
    img.loading = 'eager';
    if (img.complete && img.naturalWidth > 0) return null;
    return new Promise(done => { img.addEventListener('load', done);
                                 img.addEventListener('error', done); });
})).then(() => JSON.stringify(Array.from(document.images).map(
    img => [img.getAttribute('src'), img.naturalWidth])))
"""


def _problems(events: list[dict], session: str) -> list[str]:
    """Console errors, uncaught exceptions and failed loads reported for ``session``."""
    found = []
    for event in events:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            found.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            found.append(f"load failed: {params.get('errorText')}")
    return found


def check_page(tools: DevTools, page: Path, shot: Path) -> list[list]:
    """Open ``page``, wait for it and all its images; returns ``[[src, naturalWidth], ...]``
    after asserting no console problem; saves a full-page screenshot to ``shot``."""
    target = tools.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = tools.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        tools.send(f"{domain}.enable", session=session)
    tools.send("Emulation.setDeviceMetricsOverride", {"width": 1300, "height": 1000,
                                                      "deviceScaleFactor": 1, "mobile": False},
               session=session)
    tools.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    tools.wait_event("Page.loadEventFired", session)
    result = tools.send("Runtime.evaluate", {"expression": _LOAD_ALL_IMAGES,
                                             "awaitPromise": True, "returnByValue": True},
                        session=session)
    images = json.loads(result["result"]["value"])
    data = tools.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                      session=session)["data"]
    shot.write_bytes(base64.b64decode(data))
    problems = _problems(tools.events, session)
    tools.send("Target.closeTarget", {"targetId": target})
    assert not problems, f"{page}: {problems}"
    return images


@pytest.fixture(scope="module")
def browser() -> str:
    """The browser executable (looked up before the pages are made, so a skip is instant)."""
    return _browser()


@pytest.fixture(scope="module")
def pages(sim_file_small, tmp_path_factory):
    """A validation report (classical on the small simulated sample) and an explain page (the
    bundled regressor when installed, else classical), made with the command line."""
    from xecreco.models.registry import available_reconstructors

    root = tmp_path_factory.mktemp("browser")
    predictions = root / "predictions.root"
    assert main(["predict", str(sim_file_small), "-r", "classical", "-o", str(predictions),
                 "--no-progress"]) == 0
    report = root / "report"
    assert main(["validate", str(predictions), "-o", str(report), "--study", "energy",
                 "--study", "position", "--format", "png", "--bootstrap", "5",
                 "--no-progress"]) == 0
    reco = "default" if "default" in available_reconstructors() else "classical"
    page = root / "explain"
    assert main(["explain", str(sim_file_small), "-r", reco, "-o", str(page), "--events", "60",
                 "--gradient-events", "10", "--no-progress"]) == 0
    return {"report": report / "index.html", "explain": page / "index.html"}


def test_report_and_explain_page_render_in_headless_chromium(browser, pages, tmp_path):
    shots = Path(os.environ.get("XECRECO_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    tools = DevTools(browser, tmp_path / "profile")
    try:
        tools.send("Browser.getVersion")
        for name, page in pages.items():
            shot = shots / f"{name}.png"
            images = check_page(tools, page, shot)
            assert images, f"{page}: no <img> on the page"
            broken = [src for src, width in images if not width > 0]
            assert not broken, f"{page}: images that did not load: {broken}"
            assert shot.stat().st_size > 20_000, f"{shot}: screenshot looks empty"
    finally:
        tools.close()
