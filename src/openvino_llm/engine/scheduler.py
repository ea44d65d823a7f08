"""The worker thread that owns one ``ContinuousBatchingPipeline`` and batches every request on it.

Callers on any thread (or event loop) :meth:`BatchScheduler.submit` a tokenized prompt and a
``deliver`` callback; the worker adds it between two ``step()`` calls, so requests that arrive while
others run join the running batch (continuous batching). Each request gets:

- ``TextEvent(text)`` for decoded text as it is produced (:class:`~.detokenize.IncrementalDecoder`:
  the first token's text at once, multi-byte characters never split),
- then exactly one ``EndEvent`` (finish reason, token counts, timing) or ``ErrorEvent``.

``Ticket.cancel()`` drops a request from the batch at the next step boundary, freeing its KV cache.

``deliver`` runs on the worker thread: a thread consumes events through :class:`SyncInbox`'s ``put``, a
coroutine through :class:`AsyncInbox`'s.

openvino-genai's ``ContinuousBatchingPipeline.step()`` holds the GIL while it runs. A consumer woken by
new text therefore cannot take it until the worker leaves the next step: every token would reach its
caller one decode step late (+1 TPOT on TTFT, ~40 ms on a 0.5B model on 2 cores). So an inbox whose
consumer is waiting returns a "picked up" event from ``put``, and the worker gives those consumers up to
:data:`HANDOFF_S` to take their text before it steps again (the hand-off).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import openvino as ov
import openvino_genai as ov_genai

from ..errors import OpenVINOLLMError
from .detokenize import IncrementalDecoder

log = logging.getLogger("openvino_llm")


@dataclass(frozen=True)
class TextEvent:
    text: str


@dataclass(frozen=True)
class EndEvent:
    finish_reason: str  # "stop" | "length" | "cancelled"
    input_tokens: int
    output_tokens: int
    ttft_ms: float
    tpot_ms: float
    throughput_tps: float
    total_ms: float


@dataclass(frozen=True)
class ErrorEvent:
    error: BaseException


Event = TextEvent | EndEvent | ErrorEvent
#: Called on the worker thread with each event; returns an event that is set once a waiting consumer has
#: taken it (the hand-off), or None when no consumer waits.
Deliver = Callable[[Event], "threading.Event | None"]
#: How long the worker waits, per step, for woken consumers to take their text before it steps again.
HANDOFF_S = 0.002
Item = TypeVar("Item")


@dataclass
class _Request:
    rid: int
    input_ids: ov.Tensor
    config: ov_genai.GenerationConfig
    deliver: Deliver
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float = 0.0
    t_last: float = 0.0
    n_out: int = 0
    finish: str = "stop"
    handle: Any = None
    streamer: Any = None
    done: bool = False


class Ticket:
    """A submitted request: call :meth:`cancel` to drop it from the batch."""

    def __init__(self, scheduler: BatchScheduler, request: _Request) -> None:
        self._scheduler = scheduler
        self._request = request

    def cancel(self) -> None:
        if not self._request.done:
            self._scheduler._inbox.put(("cancel", self._request))


def timing_from_clock(req: _Request, now: float) -> tuple[float, float, float, float]:
    """(ttft_ms, tpot_ms, throughput_tps, total_ms) from the request's own timestamps."""
    first = req.t_first or now
    ttft = (first - req.t_submit) * 1000
    decode_s = max((req.t_last or now) - first, 0.0)
    tpot = decode_s * 1000 / (req.n_out - 1) if req.n_out > 1 else 0.0
    tput = (req.n_out - 1) / decode_s if req.n_out > 1 and decode_s > 0 else 0.0
    return ttft, tpot, tput, (now - req.t_submit) * 1000


def _finite(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


class WorkerThread(Generic[Item]):
    """What both schedulers share: a daemon thread running ``_run`` over an inbox of ``Item`` commands.

    ``close`` puts ``close_item`` into the inbox and joins the thread. A subclass sets up its state,
    then calls ``self._thread.start()``.
    """

    def __init__(self, thread_name: str, close_item: Item) -> None:
        self._inbox: queue.SimpleQueue[Item] = queue.SimpleQueue()
        self._closed = False
        self._close_item = close_item
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker thread (requests still running end as cancelled)."""
        if not self._closed:
            self._closed = True
            self._inbox.put(self._close_item)
            self._thread.join(timeout)

    def _check_open(self) -> None:
        if self._closed or not self.alive:
            raise OpenVINOLLMError("This engine is closed; load the model again with load_engine(...).")

    def _run(self) -> None:
        raise NotImplementedError


class BatchScheduler(WorkerThread[tuple[str, "_Request | None"]]):
    """Owns a ContinuousBatchingPipeline and runs ``step()`` on a worker thread while requests exist."""

    def __init__(self, pipeline: ov_genai.ContinuousBatchingPipeline, tokenizer: ov_genai.Tokenizer, name: str) -> None:
        super().__init__(f"openvino-llm:{name}", ("close", None))
        self._pipe = pipeline
        self._tokenizer = tokenizer
        self._active: dict[int, _Request] = {}
        self._ids = itertools.count()
        self._handoffs: list[threading.Event] = []
        self._thread.start()

    @property
    def active_requests(self) -> int:
        return len(self._active)

    def submit(self, input_ids: ov.Tensor, config: ov_genai.GenerationConfig, deliver: Deliver) -> Ticket:
        self._check_open()
        req = _Request(next(self._ids), input_ids, config, deliver)
        self._inbox.put(("add", req))
        return Ticket(self, req)

    # ---- worker thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                cmd, req = self._inbox.get(block=not self._active)
            except queue.Empty:
                cmd, req = "", None
            while cmd:
                if cmd == "close":
                    for r in list(self._active.values()):
                        self._cancel(r)
                    return
                if cmd == "add" and req is not None:
                    self._start(req)
                elif cmd == "cancel" and req is not None and req.rid in self._active:
                    self._cancel(req)
                try:
                    cmd, req = self._inbox.get_nowait()
                except queue.Empty:
                    cmd = ""
            if not self._active:
                continue
            try:
                self._pipe.step()
            except Exception as e:
                err = OpenVINOLLMError(f"OpenVINO generation step failed: {e}")
                for r in list(self._active.values()):
                    self._fail(r, err)
                continue
            self._collect()
            self._hand_off()

    def _hand_off(self) -> None:
        """Let the consumers woken by this step's text take it before the next step (which holds the GIL)."""
        if not self._handoffs:
            return
        deadline = time.perf_counter() + HANDOFF_S
        for picked_up in self._handoffs:
            left = deadline - time.perf_counter()
            if left <= 0 or not picked_up.wait(left):
                break
        self._handoffs.clear()

    def _start(self, req: _Request) -> None:
        try:
            req.streamer = IncrementalDecoder(self._tokenizer)
            req.handle = self._pipe.add_request(req.rid, req.input_ids, req.config)
        except Exception as e:
            self._fail(req, OpenVINOLLMError(f"OpenVINO rejected the request: {e}"), active=False)
            return
        self._active[req.rid] = req

    def _collect(self) -> None:
        now = time.perf_counter()
        for req in list(self._active.values()):
            try:
                self._read(req, now)
                status = req.handle.get_status()
                if status != ov_genai.GenerationStatus.RUNNING:
                    self._read(req, now)
                    self._end(req, now, status)
            except Exception as e:
                self._fail(req, OpenVINOLLMError(f"Reading generated tokens failed: {e}"))

    def _read(self, req: _Request, now: float) -> None:
        if not req.handle.can_read():
            return
        for out in req.handle.read().values():
            ids = list(out.generated_ids)
            if ids:
                if not req.t_first:
                    req.t_first = now
                req.t_last = now
                req.n_out += len(ids)
                self._text(req, req.streamer.write(ids))
            if out.finish_reason == ov_genai.GenerationFinishReason.LENGTH:
                req.finish = "length"

    def _text(self, req: _Request, text: str) -> None:
        if text:
            picked_up = self._send(req, TextEvent(text))
            if picked_up is not None:
                self._handoffs.append(picked_up)

    def _end(self, req: _Request, now: float, status: Any) -> None:
        self._text(req, req.streamer.end())
        ttft, tpot, tput, total = timing_from_clock(req, now)
        try:  # prefer openvino-genai's own measurements where it has them
            m = req.handle.get_perf_metrics()
            ttft = m.get_ttft().mean if _finite(m.get_ttft().mean) else ttft
            tpot = m.get_tpot().mean if _finite(m.get_tpot().mean) else tpot
            tput = m.get_throughput().mean if _finite(m.get_throughput().mean) else tput
        except Exception:
            pass
        if status in (ov_genai.GenerationStatus.CANCEL, ov_genai.GenerationStatus.IGNORED):
            req.finish = "cancelled"
        self._finish(req)
        self._send(req, EndEvent(req.finish, int(req.input_ids.shape[-1]), req.n_out, ttft, tpot, tput, total))

    def _cancel(self, req: _Request) -> None:
        try:
            req.handle.cancel()
        except Exception:
            pass
        now = time.perf_counter()
        self._finish(req)
        ttft, tpot, tput, total = timing_from_clock(req, now)
        self._send(req, EndEvent("cancelled", int(req.input_ids.shape[-1]), req.n_out, ttft, tpot, tput, total))

    def _fail(self, req: _Request, err: BaseException, active: bool = True) -> None:
        if active:
            try:
                req.handle.cancel()
            except Exception:
                pass
        self._finish(req)
        self._send(req, ErrorEvent(err))

    def _finish(self, req: _Request) -> None:
        req.done = True
        self._active.pop(req.rid, None)

    @staticmethod
    def _send(req: _Request, event: Event) -> threading.Event | None:
        try:
            return req.deliver(event)
        except Exception:  # the consumer is gone (closed event loop): nothing to tell
            log.debug("dropped an event for request %s", req.rid, exc_info=True)
            return None


class SyncInbox:
    """Events from the worker thread to one consuming thread (``deliver=inbox.put``), with the hand-off."""

    def __init__(self) -> None:
        self._items: collections.deque[Event] = collections.deque()
        self._ready = threading.Condition(threading.Lock())
        self._waiting = False
        self._picked_up = threading.Event()

    def put(self, event: Event) -> threading.Event | None:  # on the worker thread
        """Deliver ``event``; returns the event set when the waiting consumer took it (None: nobody waits)."""
        with self._ready:
            self._items.append(event)
            waiting = self._waiting
            if waiting:
                self._picked_up.clear()
                self._ready.notify()
        return self._picked_up if waiting else None

    def get(self, timeout: float) -> Event:
        """The next event, waiting up to ``timeout`` seconds (``queue.Empty`` when none came)."""
        with self._ready:
            if not self._items:
                self._waiting = True
                try:
                    if not self._ready.wait_for(lambda: self._items, timeout):
                        raise queue.Empty
                finally:
                    self._waiting = False
            event = self._items.popleft()
        self._picked_up.set()
        return event


class AsyncInbox:
    """Events from the worker thread to one coroutine (``deliver=inbox.put``).

    The event loop is woken (``call_soon_threadsafe``) only when the coroutine is actually waiting,
    and everything that arrived meanwhile is taken in one go: no per-token task or wake-up when the
    consumer is busy. A wait is a bare future (no ``asyncio.Event``, no per-wait timeout); one timer
    per stream runs ``on_idle`` every ``idle_s`` seconds while the coroutine waits, and an error it
    raises is raised by the wait.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_idle: Callable[[], None], idle_s: float = 5.0) -> None:
        self._loop = loop
        self._items: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_idle = on_idle
        self._idle_s = idle_s
        self._idle_timer: asyncio.TimerHandle | None = None
        self._picked_up = threading.Event()

    def put(self, event: Event) -> threading.Event | None:  # on the worker thread
        """Deliver ``event`` (the scheduler's ``deliver`` callback); the hand-off event when the coroutine waits."""
        self._items.append(event)
        waiter = self._waiter
        if waiter is None:
            return None
        self._waiter = None
        self._picked_up.clear()
        self._loop.call_soon_threadsafe(_wake, waiter)
        return self._picked_up

    async def drain(self) -> list[Event]:
        """All events that arrived, waiting for at least one."""
        while not self._items:
            waiter = self._loop.create_future()
            self._waiter = waiter
            if self._items:  # arrived between the check and setting the waiter
                self._waiter = None
                break
            if self._idle_timer is None:
                self._idle_timer = self._loop.call_later(self._idle_s, self._idle)
            try:
                await waiter
            finally:
                self._waiter = None
        events = []
        while self._items:
            events.append(self._items.popleft())
        self._picked_up.set()
        return events

    def close(self) -> None:
        """Stop the idle timer (the stream ended)."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle(self) -> None:  # on the loop, every idle_s seconds
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                self._on_idle()
            except Exception as e:  # handed to the waiting coroutine
                waiter.set_exception(e)
                self._idle_timer = None
                return
        self._idle_timer = self._loop.call_later(self._idle_s, self._idle)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


__all__ = [
    "HANDOFF_S",
    "AsyncInbox",
    "BatchScheduler",
    "EndEvent",
    "ErrorEvent",
    "Event",
    "SyncInbox",
    "TextEvent",
    "Ticket",
    "WorkerThread",
]
