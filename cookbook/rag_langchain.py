"""Ask questions about a folder of documents, on a local OpenVINO model, with LangChain and Chroma.

    python cookbook/rag_langchain.py --question "How do I choose the OpenVINO device?"
    python cookbook/rag_langchain.py --docs ~/notes --db ~/notes-index --question "..." --device CPU

What it does:

1. Index: the documents (default: this project's README.md and docs/) are split into chunks,
   embedded with ``OpenVINOEmbeddings`` (default all-MiniLM-L6-v2) and kept in a persistent Chroma
   store on disk (embedded mode, telemetry off). Each chunk carries the SHA-256 of its file, so the
   next run embeds only new or changed files and drops the chunks of deleted ones.
2. Retrieve: the chunks closest to the question; with ``--reranker MODEL`` (a cross-encoder) the
   candidates are reranked with ``OpenVINORerank`` first.
3. Answer: ``ChatOpenVINO`` (default Qwen2.5-Coder-0.5B-Instruct) answers from those chunks, streamed to
   the terminal, followed by the files it was given as sources.

Needs ``pip install "openvino-llm[cookbook]"``. Everything runs offline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import chromadb
from chromadb.config import Settings
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_text_splitters import RecursiveCharacterTextSplitter

from corpus import DEFAULT_DOCS, IndexReport, default_db, find_documents, plan_update, progress
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings, OpenVINORerank

DEFAULT_DB = default_db("cookbook-chroma")
COLLECTION = "docs"

SYSTEM_PROMPT = (
    "You are a helpful assistant answering questions about a software project. Use only the context below, "
    "which comes from the project's documents; each part starts with its source file in brackets. Answer in "
    "a few sentences and name the source file you used. If the context does not contain the answer, say so."
)


def open_store(db: Path, embeddings: OpenVINOEmbeddings) -> Chroma:
    """The persistent Chroma collection in ``db`` (Chroma runs embedded in this process, telemetry off)."""
    client = chromadb.PersistentClient(path=str(db), settings=Settings(anonymized_telemetry=False))
    return Chroma(collection_name=COLLECTION, embedding_function=embeddings, client=client)


def index_documents(store: Chroma, documents: dict[str, Path], chunk_size: int = 800) -> IndexReport:
    """Bring the store up to date with ``documents``: embed new and changed files, drop deleted ones."""
    stored = store.get(include=["metadatas"])
    stored_hash: dict[str, str] = {}
    stored_ids: dict[str, list[str]] = {}
    for chunk_id, meta in zip(stored["ids"], stored["metadatas"], strict=True):
        stored_hash[meta["source"]] = meta["sha256"]
        stored_ids.setdefault(meta["source"], []).append(chunk_id)

    report, to_embed = plan_update(documents, stored_hash)
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_size // 8)
    new_chunks: list[Document] = []
    for doc in to_embed:
        metadata = {"source": doc.source, "sha256": doc.sha256}
        chunks = splitter.split_documents([Document(page_content=doc.text, metadata=metadata)])
        for i, chunk in enumerate(chunks):
            chunk.id = f"{doc.source}#{doc.sha256[:12]}#{i}"
        new_chunks.extend(chunks)

    stale = [i for source in (*report.updated, *report.removed) for i in stored_ids[source]]
    if stale:
        store.delete(ids=stale)
    with progress(len(new_chunks), "chunk") as bar:
        for start in range(0, len(new_chunks), 32):
            batch = new_chunks[start : start + 32]
            store.add_documents(batch, ids=[doc.id for doc in batch])
            bar.update(len(batch))
    report.embedded = len(new_chunks)
    return report


def retrieve(store: Chroma, question: str, k: int = 3, reranker: OpenVINORerank | None = None) -> list[Document]:
    """The ``k`` chunks that best answer ``question`` (vector search, then the reranker if there is one)."""
    if reranker is None:
        return store.similarity_search(question, k=k)
    candidates = store.similarity_search(question, k=4 * k)
    return list(reranker.compress_documents(candidates, question))[:k]


def prompt_messages(question: str, context: Sequence[Document]) -> list[tuple[str, str]]:
    """System prompt with the context chunks, then the question."""
    parts = [f"[{doc.metadata['source']}]\n{doc.page_content}" for doc in context]
    return [("system", SYSTEM_PROMPT + "\n\nContext:\n\n" + "\n\n".join(parts)), ("human", question)]


def sources_of(context: Sequence[Document]) -> list[str]:
    """The distinct source files of the context, in order."""
    return list(dict.fromkeys(doc.metadata["source"] for doc in context))


def stream_answer(llm: ChatOpenVINO, question: str, context: Sequence[Document]) -> Iterator[str]:
    """The answer's text, piece by piece as the model writes it."""
    for chunk in llm.stream(prompt_messages(question, context)):
        if chunk.content:
            yield str(chunk.content)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The documents, index and model options (shared with chat_ui.py)."""
    parser.add_argument("--docs", type=Path, nargs="+", default=list(DEFAULT_DOCS), help="folders or text files")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="Chroma folder (created, then reused)")
    parser.add_argument("--model", help="chat model: name, IR, .gguf, checkpoint or hub id; None: qwen2.5-coder-0.5b")
    parser.add_argument("--embedding-model", help="embedding model; None: the built-in all-MiniLM-L6-v2")
    parser.add_argument("--reranker", help="cross-encoder to rerank retrieved chunks (none ships with openvino-llm)")
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: CPU, GPU, NPU, AUTO, ...")
    parser.add_argument("--weight-format", help="weight format when exporting a Hugging Face model: int4, int8, fp16")
    parser.add_argument("--top-k", type=int, default=3, help="chunks given to the model")
    parser.add_argument("--max-tokens", type=int, default=256, help="longest answer, in tokens")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Answer a question about a folder of documents with a local OpenVINO model (LangChain + Chroma).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--question", "-q", help="the question; without it the documents are only indexed")
    return add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    documents = find_documents(args.docs)
    embeddings = OpenVINOEmbeddings(model=args.embedding_model, device=args.device)
    store = open_store(args.db, embeddings)
    report = index_documents(store, documents)
    print(
        f"Index {args.db}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed ({report.embedded} chunks embedded)",
        file=sys.stderr,
    )
    if not args.question:
        return 0

    reranker = OpenVINORerank(model=args.reranker, device=args.device) if args.reranker else None
    context = retrieve(store, args.question, k=args.top_k, reranker=reranker)
    llm = ChatOpenVINO(
        model=args.model, device=args.device, weight_format=args.weight_format, max_tokens=args.max_tokens
    )
    for text in stream_answer(llm, args.question, context):
        print(text, end="", flush=True)
    print("\n\nSources:")
    for source in sources_of(context):
        print(f"- {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
