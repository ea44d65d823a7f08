"""cookbook/chat_ui.py end to end: the real server on the default models, driven by headless Debian Chromium."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from tests.cookbook.conftest import CORPUS

import chat_ui
import rag_langchain
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
IN_CI = bool(os.environ.get("CI"))

# Records what the page showed at each change of the answer, and when, to tell streamed text from one burst.
RECORD_UPDATES = """
window.__updates = [];
document.addEventListener("DOMContentLoaded", () => {
  const answer = document.getElementById("answer"), status = document.getElementById("status");
  new MutationObserver(() => window.__updates.push([answer.textContent.length, status.textContent, performance.now()]))
    .observe(answer, {childList: true, characterData: true, subtree: true});
});
"""


@pytest.fixture
def server_url(corpus: Path, tmp_path: Path) -> Iterator[str]:
    """The chat app over the test corpus, served by uvicorn on a free port of 127.0.0.1 in a thread."""
    store = rag_langchain.open_store(tmp_path / "db", OpenVINOEmbeddings())
    rag_langchain.index_documents(store, rag_langchain.find_documents([corpus]))
    app = chat_ui.create_app(store, ChatOpenVINO(max_tokens=32), top_k=2)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_page_streams_the_answer_and_lists_sources(server_url: str) -> None:
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail("Chromium is missing: CI must install Debian's chromium package (apt-get install chromium).")
        pytest.skip("no system Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page()
            page.add_init_script(RECORD_UPDATES)
            page.goto(server_url)
            page.fill("#question", "Which port does the Kettle service listen on?")
            page.click("#send")
            page.wait_for_function("document.getElementById('status').textContent !== 'Answering...'", timeout=120_000)
            status = page.inner_text("#status")
            answer = page.inner_text("#answer")
            chunks = int(page.get_attribute("#answer", "data-chunks") or 0)
            sources = page.locator("#sources li").all_inner_texts()
            updates = page.evaluate("window.__updates")
        finally:
            browser.close()

    assert status == "Done.", status
    assert answer.strip() and chunks > 1  # the text came in several server-sent events
    # Shown growing while the model was still writing (not one buffered burst at the end).
    streaming = [(length, ms) for length, state, ms in updates if state == "Answering..." and length > 0]
    assert len(streaming) > 1 and streaming == sorted(streaming)
    assert streaming[-1][1] - streaming[0][1] > 30, streaming  # 30+ ms between the first and the last piece
    assert sources and sources[0] == "corpus/guides/kettle.md" and set(sources) <= {f"corpus/{n}" for n in CORPUS}


def test_ask_endpoint_is_server_sent_events(server_url: str) -> None:
    import urllib.request

    with urllib.request.urlopen(server_url + "/ask?q=When%20does%20the%20Zephyr%20pipeline%20run%3F", timeout=120) as r:
        assert r.headers.get_content_type() == "text/event-stream"
        body = r.read().decode()
    events = [block.split("\n", 1) for block in body.strip().split("\n\n")]
    names = [head.removeprefix("event: ") for head, _ in events]
    assert names[-2:] == ["sources", "done"] and set(names[:-2]) == {"token"} and len(names) > 3
    data = [json.loads(rest.removeprefix("data: ")) for _, rest in events]
    assert "".join(data[:-2]).strip()
    assert data[-2][0] == "corpus/zephyr.md"


def test_one_command_starts_the_server_on_localhost(corpus: Path, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, str(chat_ui.__file__), "--docs", str(corpus), "--db", str(tmp_path / "db")]
    process = subprocess.Popen([*command, "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the server did not answer within 180 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    page = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert "<title>Ask the documents</title>" in page and 'new EventSource("/ask?q="' in page
        assert _listening_addresses(port) == {"127.0.0.1"}, "the server must listen on loopback only by default"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses with a socket listening on ``port`` (from /proc/net/tcp, state 0A = LISTEN)."""
    import socket
    import struct

    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found
