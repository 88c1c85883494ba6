"""The inspection page in a real headless browser: Debian's `chromium` driven through
`chromedriver`'s WebDriver protocol (plain HTTP, no client library). Skips, saying why, where
either is not installed (CI installs them: apt-get install chromium chromium-driver)."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
import uvicorn
from serving import history_of

from ops.broker import free_port
from ops.metrics import ServeMetrics, fresh_registry
from ops.settings import ServeSettings
from state.store import MemoryHistoryStore
from stream.contract import history as hist
from stream.contract.ids import item_id, user_id
from stream.serve.app import create_app
from stream.serve.models import ModelHolder
from stream.serve.pool import PopularPool
from stream.serve.service import RankingService
from stream.serve.view import HistoryView

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no headless browser: Debian's `chromium` is not installed "
                                                "(apt-get install chromium chromium-driver)"),
    pytest.mark.skipif(DRIVER is None, reason="no `chromedriver` to drive chromium (apt-get install chromium-driver)"),
]
TOKEN = "page-token"


class WebDriver:
    """The few W3C WebDriver commands the test needs, over HTTP."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        options = {"binary": CHROMIUM, "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                                                 "--disable-dev-shm-usage"]}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def do(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def find(self, css: str) -> str:
        return next(iter(self.do("POST", "/element", {"using": "css selector", "value": css}).values()))

    def find_all(self, css: str) -> list[str]:
        return [next(iter(e.values())) for e in self.do("POST", "/elements", {"using": "css selector", "value": css})]

    def text(self, element: str) -> str:
        return self.do("GET", f"/element/{element}/text")

    def quit(self) -> None:
        self._call("DELETE", f"/session/{self.session}")


@pytest.fixture
def service_url(ckpt_dir):
    store = MemoryHistoryStore()
    store.apply({user_id("u1"): hist.encode(history_of(5))})
    view = HistoryView(store)
    view.ready = True
    pool = PopularPool()
    for j in range(30):
        pool.add(item_id(f"i{j}"), f"i{j}", 1_700_000_000_000)
    service = RankingService(view, ModelHolder(ckpt_dir.path), pool, ServeMetrics(fresh_registry()))
    settings = ServeSettings(checkpoint_dir=str(ckpt_dir.path), inspect_page=True, history_endpoint=True,
                             serve_token=TOKEN)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service, settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    port = free_port()
    driver = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "chromedriver did not start"
                time.sleep(0.1)
        web = WebDriver(port)
        yield web
        web.quit()
    finally:
        driver.terminate()
        driver.wait(10)


def test_the_page_shows_the_timeline_and_both_top_10s(service_url, browser):
    browser.do("POST", "/url", {"url": f"{service_url}/?token={TOKEN}"})
    browser.do("POST", f"/element/{browser.find('#user')}/value", {"text": "u1"})
    browser.do("POST", f"/element/{browser.find('#query')}/value", {"text": "red shoes"})
    browser.do("POST", f"/element/{browser.find('#go')}/click", {})
    deadline = time.monotonic() + 20
    while len(browser.find_all("#top-search li")) < 10:
        assert time.monotonic() < deadline, browser.text(browser.find("#error"))
        time.sleep(0.1)
    assert "step 2" in browser.text(browser.find("#model"))
    rows = [browser.text(r) for r in browser.find_all("#timeline tbody tr")]
    assert len(rows) == 6
    assert "(first)" in rows[0] and "rec->rec" in rows[1] and "rec->search" in rows[5]
    assert len(browser.find_all("#top-rec li")) == 10
    assert all(browser.text(li).startswith("i") for li in browser.find_all("#top-rec li"))
