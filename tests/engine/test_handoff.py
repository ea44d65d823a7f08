"""The hand-off: an inbox whose consumer waits tells the worker when the consumer took the event.

``ContinuousBatchingPipeline.step()`` holds the GIL, so the worker waits (briefly) for woken consumers
before it steps again; these tests pin the inboxes' side of that contract with real threads and a real
event loop, no timing assertions.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time

import pytest

from openvino_llm.engine.scheduler import AsyncInbox, EndEvent, SyncInbox, TextEvent


def _until(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.001)


def test_sync_inbox_reports_a_waiting_consumer_and_its_pickup() -> None:
    inbox = SyncInbox()
    assert inbox.put(TextEvent("early")) is None  # nobody waits: no hand-off
    assert inbox.get(timeout=1) == TextEvent("early")
    got: list[object] = []
    consumer = threading.Thread(target=lambda: got.append(inbox.get(timeout=30)))
    consumer.start()
    _until(lambda: inbox._waiting, "the consumer never waited")
    picked_up = inbox.put(TextEvent("Once"))
    assert picked_up is not None and picked_up.wait(30)
    consumer.join(30)
    assert got == [TextEvent("Once")]
    with pytest.raises(queue.Empty):
        inbox.get(timeout=0.01)


def test_async_inbox_reports_a_waiting_coroutine_and_its_pickup() -> None:
    async def main() -> None:
        inbox = AsyncInbox(asyncio.get_running_loop(), lambda: None)
        assert inbox.put(TextEvent("early")) is None
        assert await inbox.drain() == [TextEvent("early")]
        handed: list[threading.Event | None] = []

        def worker() -> None:
            _until(lambda: inbox._waiter is not None, "the coroutine never waited")
            handed.append(inbox.put(TextEvent("Once")))
            inbox.put(EndEvent("stop", 3, 1, 1.0, 0.0, 0.0, 1.0))  # while the first is not taken: no new hand-off

        thread = threading.Thread(target=worker)
        thread.start()
        events = await inbox.drain()
        thread.join(30)
        inbox.close()
        assert events[0] == TextEvent("Once")
        picked_up = handed[0]
        assert picked_up is not None and picked_up.is_set()

    asyncio.run(main())
