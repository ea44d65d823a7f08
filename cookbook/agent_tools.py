"""The tools of the cookbook's agents, as plain functions: each framework wraps them its own way.

- :func:`calculator`: ``a operation b`` for two numbers (add, subtract, multiply, divide, power, modulo).
- :func:`fetch_page`: the text of a web page (scripts, styles and markup removed).
- :data:`URL`: finds the URLs a user wrote, so an agent can constrain ``fetch_page``'s argument to them.

The search tool over the documents is built in each agent from its own framework's index.
"""

import operator
import re
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Literal

SYSTEM_PROMPT = (
    "You are a helpful assistant with tools. Use calculator for arithmetic, search_docs for questions about "
    "the project's documentation, and fetch_page to read a web page when the user gives a URL. When a tool "
    "has answered, reply to the user in one or two sentences that state the tool's result."
)

ANSWER_PROMPT = (
    "You are a helpful assistant. Answer the question in one or two sentences that state the tool's result "
    "exactly, quoting its numbers and facts; do not compute anything yourself."
)


def answer_turn(question: str, results: Sequence[str]) -> str:
    """The last step's user turn: the question and the tool results, labelled.

    Given the results in the system prompt or under the question unlabelled, the 0.5B default model
    sometimes works the arithmetic out again (and gets it wrong); labelled like this it quotes them.
    """
    return f"Question: {question}\nTool result: " + "\n\n".join(results)


URL = re.compile(r"https?://[^\s<>\"')\]]+[^\s<>\"')\].,;:!?]")
"""A URL in text, without the punctuation that may follow it."""

# --- calculator ----------------------------------------------------------------------------------------------

_OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add, "subtract": operator.sub, "multiply": operator.mul, "divide": operator.truediv,
    "power": operator.pow, "modulo": operator.mod,
}  # fmt: skip


Operation = Literal["add", "subtract", "multiply", "divide", "power", "modulo"]


def calculator(a: float, operation: Operation, b: float) -> str:
    """Compute `a operation b` exactly, e.g. a=1234, operation="multiply", b=5678. Use it for any arithmetic."""
    try:
        result = _OPERATIONS[operation](a, b)
    except (ZeroDivisionError, OverflowError) as e:
        return f"error: {a} {operation} {b}: {e}"
    return str(int(result) if isinstance(result, float) and result.is_integer() else result)


# --- fetch_page ----------------------------------------------------------------------------------------------


class _TextOfHTML(HTMLParser):
    """Collects the visible text of an HTML page (no scripts, styles or markup)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("script", "style", "noscript", "template")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style", "noscript", "template") and self._hidden > 0

    def handle_data(self, data: str) -> None:
        if not self._hidden and data.strip():
            self.parts.append(" ".join(data.split()))


def page_text(html: str) -> str:
    parser = _TextOfHTML()
    parser.feed(html)
    return "\n".join(parser.parts)


def fetch_page(url: str) -> str:
    """Download the web page at url (http or https) and return its text."""
    if not url.startswith(("http://", "https://")):
        return f"error: {url!r} is not an http(s) URL"
    request = urllib.request.Request(url, headers={"User-Agent": "openvino-llm-cookbook/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            charset = response.headers.get_content_charset() or "utf-8"
            body = response.read(2_000_000).decode(charset, errors="replace")
            is_html = "html" in (response.headers.get_content_type() or "")
    except OSError as e:
        return f"error: cannot fetch {url}: {e}"
    text = page_text(body) if is_html else body
    return text[:3000]


@dataclass
class Event:
    """One step of an agent run: ``kind`` is "tool_call" (name, args), "tool_result" (name, text) or "token" (text)."""

    kind: str
    text: str = ""
    name: str = ""
    args: dict[str, Any] | None = None


class EventPrinter:
    """Prints an agent run as it happens: each tool call and result on its line, the answer streamed."""

    def __init__(self) -> None:
        self._in_answer = False

    def __call__(self, event: Event) -> None:
        if event.kind == "token":
            if not self._in_answer:
                print("Answer: ", end="")
                self._in_answer = True
            print(event.text, end="", flush=True)
            return
        if self._in_answer:
            print()
            self._in_answer = False
        if event.kind == "tool_call":
            print(f"-> {event.name}({event.args})", flush=True)
        else:
            result = event.text if len(event.text) <= 300 else event.text[:300] + " ..."
            print(f"<- {event.name}: {result}", flush=True)

    def close(self) -> None:
        print()
