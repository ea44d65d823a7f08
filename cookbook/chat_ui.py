"""A small web chat page over the LangChain RAG app, with the answer streamed token by token.

    python cookbook/chat_ui.py                      # then open http://127.0.0.1:8000
    python cookbook/chat_ui.py --docs ~/notes --db ~/notes-index --port 8080 --device CPU

The page asks ``GET /ask?q=...`` and reads the answer as server-sent events: ``token`` events
(each a JSON string, the text as the model writes it), then ``sources`` (a JSON list of file
names) and ``done``. Indexing, retrieval and the model are those of ``rag_langchain.py``
(``OpenVINOEmbeddings`` on a persistent Chroma store, ``ChatOpenVINO``, optional ``--reranker``).
The server listens on 127.0.0.1 only unless ``--host`` says otherwise.

Needs ``pip install "openvino-llm[cookbook]"``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Sequence

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, StreamingResponse
from langchain_chroma import Chroma
from starlette.concurrency import run_in_threadpool

import rag_langchain
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings, OpenVINORerank

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ask the documents</title>
<style>
  body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; }
  form { display: flex; gap: .5rem; }
  input { flex: 1; padding: .5rem; font-size: 1rem; }
  #answer { white-space: pre-wrap; border: 1px solid #ccc; border-radius: .4rem; padding: .8rem; min-height: 4rem; }
  #status { color: #666; font-size: .9rem; }
</style>
</head>
<body>
<h1>Ask the documents</h1>
<form id="ask">
  <input id="question" name="q" placeholder="Ask a question about the documents" autocomplete="off" required>
  <button id="send" type="submit">Ask</button>
</form>
<p id="status">Ready.</p>
<div id="answer" data-chunks="0"></div>
<h2>Sources</h2>
<ul id="sources"></ul>
<script>
const form = document.getElementById("ask"), answer = document.getElementById("answer");
const statusLine = document.getElementById("status"), sources = document.getElementById("sources");
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = document.getElementById("question").value.trim();
  if (!question) return;
  answer.textContent = ""; answer.dataset.chunks = "0"; sources.replaceChildren();
  statusLine.textContent = "Answering...";
  document.getElementById("send").disabled = true;
  const stream = new EventSource("/ask?q=" + encodeURIComponent(question));
  const finish = (text) => {
    stream.close(); statusLine.textContent = text; document.getElementById("send").disabled = false;
  };
  stream.addEventListener("token", (e) => {
    answer.textContent += JSON.parse(e.data);
    answer.dataset.chunks = String(Number(answer.dataset.chunks) + 1);
  });
  stream.addEventListener("sources", (e) => {
    for (const name of JSON.parse(e.data)) {
      const item = document.createElement("li"); item.textContent = name; sources.append(item);
    }
  });
  stream.addEventListener("done", () => finish("Done."));
  stream.addEventListener("failed", (e) => finish("Error: " + JSON.parse(e.data)));
  stream.onerror = () => finish("Error: the connection was lost.");
});
</script>
</body>
</html>
"""


def sse(event: str, data: object) -> str:
    """One server-sent event with a JSON payload."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def create_app(store: Chroma, llm: ChatOpenVINO, top_k: int = 3, reranker: OpenVINORerank | None = None) -> FastAPI:
    """The web app: the page at ``/`` and the streamed answers at ``/ask?q=...``."""
    app = FastAPI(title="Ask the documents")

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return PAGE

    @app.get("/ask")
    async def ask(q: str) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            try:
                context = await run_in_threadpool(rag_langchain.retrieve, store, q, top_k, reranker)
                async for chunk in llm.astream(rag_langchain.prompt_messages(q, context)):
                    if chunk.content:
                        yield sse("token", chunk.content)
                yield sse("sources", rag_langchain.sources_of(context))
                yield sse("done", None)
            except Exception as e:  # shown on the page instead of a dropped connection
                yield sse("failed", f"{type(e).__name__}: {e}")

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A web chat page over a folder of documents, answers streamed from a local OpenVINO model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    rag_langchain.add_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = rag_langchain.open_store(args.db, OpenVINOEmbeddings(model=args.embedding_model, device=args.device))
    rag_langchain.index_documents(store, rag_langchain.find_documents(args.docs))
    reranker = OpenVINORerank(model=args.reranker, device=args.device) if args.reranker else None
    llm = ChatOpenVINO(
        model=args.model, device=args.device, weight_format=args.weight_format, max_tokens=args.max_tokens
    )
    print(f"Open http://{args.host}:{args.port} in a browser (Ctrl+C stops the server).", file=sys.stderr)
    uvicorn.run(create_app(store, llm, args.top_k, reranker), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
