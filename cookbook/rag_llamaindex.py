"""Ask questions about a folder of documents, on a local OpenVINO model, with LlamaIndex and Chroma.

    python cookbook/rag_llamaindex.py --question "How do I choose the OpenVINO device?"
    python cookbook/rag_llamaindex.py --chat                      # follow-up questions, one per line
    python cookbook/rag_llamaindex.py --docs ~/notes --db ~/notes-index --question "..." --device CPU

What it does:

1. Index: the documents (default: this project's README.md and docs/) are split into nodes,
   embedded with ``OpenVINOEmbedding`` (default all-MiniLM-L6-v2) and kept in a ``VectorStoreIndex``
   on a persistent Chroma store (embedded mode, telemetry off). Each document's id is its file name
   and its nodes carry the file's SHA-256, so the next run embeds only new or changed files and
   deletes the nodes of removed ones.
2. Answer: a streaming query engine (``--question``) or a context chat engine (``--chat``, which
   keeps the conversation for follow-ups) on ``OpenVINO`` (default SmolLM2-135M-Instruct), with
   ``OpenVINORerank`` as node postprocessor when ``--reranker MODEL`` (a cross-encoder) is given.
   The answer is streamed, followed by its source files.

Needs ``pip install "openvino-llm[cookbook]"``. Everything runs offline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import chromadb
from chromadb.config import Settings
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.chat_engine.types import BaseChatEngine
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import ChatPromptTemplate
from llama_index.core.query_engine import BaseQueryEngine
from llama_index.core.schema import NodeWithScore
from llama_index.vector_stores.chroma import ChromaVectorStore

from corpus import DEFAULT_DOCS, IndexReport, default_db, find_documents, plan_update, progress
from llama_index_openvino import OpenVINO, OpenVINOEmbedding, OpenVINORerank

DEFAULT_DB = default_db("cookbook-chroma-llamaindex")
COLLECTION = "docs"

SYSTEM_PROMPT = (
    "You are a helpful assistant answering questions about a software project from its documents. "
    "Answer in a few sentences from the context and name the source file you used. If the context does "
    "not contain the answer, say so."
)


def open_index(db: Path, embed_model: OpenVINOEmbedding) -> VectorStoreIndex:
    """The index on the persistent Chroma collection in ``db`` (Chroma runs in this process, telemetry off)."""
    client = chromadb.PersistentClient(path=str(db), settings=Settings(anonymized_telemetry=False))
    vector_store = ChromaVectorStore(chroma_collection=client.get_or_create_collection(COLLECTION))
    return VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)


def index_documents(index: VectorStoreIndex, documents: dict[str, Path], chunk_size: int = 256) -> IndexReport:
    """Bring the index up to date with ``documents``: embed new and changed files, delete removed ones."""
    collection = index.vector_store.client  # ChromaVectorStore.client is its chromadb collection
    stored_hash = {meta["source"]: meta["sha256"] for meta in collection.get(include=["metadatas"])["metadatas"]}

    report, to_embed = plan_update(documents, stored_hash)
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_size // 8)
    new_docs: list[Document] = []
    for source in to_embed:
        doc = Document(text=source.text, id_=source.source, metadata={"source": source.source, "sha256": source.sha256})
        doc.excluded_embed_metadata_keys = ["sha256"]
        doc.excluded_llm_metadata_keys = ["sha256"]
        new_docs.append(doc)

    for source in (*report.updated, *report.removed):
        index.delete_ref_doc(source, delete_from_docstore=True)
    nodes = splitter.get_nodes_from_documents(new_docs)
    with progress(len(nodes), "node") as bar:
        for start in range(0, len(nodes), 32):
            batch = nodes[start : start + 32]
            index.insert_nodes(batch)
            bar.update(len(batch))
    report.embedded = len(nodes)
    return report


def rerankers(reranker: str | None, top_k: int, device: str) -> list[BaseNodePostprocessor]:
    return [OpenVINORerank(model=reranker, top_n=top_k, device=device)] if reranker else []


QA_PROMPT = ChatPromptTemplate.from_messages(
    [("system", SYSTEM_PROMPT + "\n\nContext:\n{context_str}"), ("user", "{query_str}")]
)


def query_engine(
    index: VectorStoreIndex, llm: OpenVINO, top_k: int = 3, reranker: str | None = None
) -> BaseQueryEngine:
    """A streaming query engine: ``top_k`` nodes (reranked from ``4 * top_k`` when there is a reranker)."""
    return index.as_query_engine(
        llm=llm,
        streaming=True,
        text_qa_template=QA_PROMPT,
        similarity_top_k=4 * top_k if reranker else top_k,
        node_postprocessors=rerankers(reranker, top_k, llm.device),
    )


def chat_engine(index: VectorStoreIndex, llm: OpenVINO, top_k: int = 3, reranker: str | None = None) -> BaseChatEngine:
    """A chat engine that retrieves context for every message and keeps the conversation."""
    return index.as_chat_engine(
        chat_mode="context",
        llm=llm,
        system_prompt=SYSTEM_PROMPT,
        similarity_top_k=4 * top_k if reranker else top_k,
        node_postprocessors=rerankers(reranker, top_k, llm.device),
    )


def sources_of(nodes: Sequence[NodeWithScore]) -> list[str]:
    """The distinct source files of the nodes, in order."""
    return list(dict.fromkeys(n.node.metadata["source"] for n in nodes))


def print_answer(tokens: Iterable[str], nodes: Sequence[NodeWithScore]) -> None:
    """Print the streamed answer, then its source files."""
    for token in tokens:
        print(token, end="", flush=True)
    print("\n\nSources:")
    for source in sources_of(nodes):
        print(f"- {source}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Answer questions about a folder of documents with a local OpenVINO model (LlamaIndex + Chroma).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--question", "-q", help="the question (with --chat: the first message)")
    parser.add_argument("--chat", action="store_true", help="chat: read follow-up questions from stdin, one a line")
    parser.add_argument("--docs", type=Path, nargs="+", default=list(DEFAULT_DOCS), help="folders or text files")
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="Chroma folder (created, then reused)")
    parser.add_argument("--model", help="chat model: name, IR, .gguf, checkpoint or hub id; None: qwen2.5-coder-0.5b")
    parser.add_argument("--embedding-model", help="embedding model; None: the built-in all-MiniLM-L6-v2")
    parser.add_argument("--reranker", help="cross-encoder to rerank retrieved nodes (none ships with openvino-llm)")
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: CPU, GPU, NPU, AUTO, ...")
    parser.add_argument("--weight-format", help="weight format when exporting a Hugging Face model: int4, int8, fp16")
    parser.add_argument("--top-k", type=int, default=3, help="nodes given to the model")
    parser.add_argument("--max-tokens", type=int, default=256, help="longest answer, in tokens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    index = open_index(args.db, OpenVINOEmbedding(model=args.embedding_model, device=args.device))
    report = index_documents(index, find_documents(args.docs))
    print(
        f"Index {args.db}: {len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed ({report.embedded} nodes embedded)",
        file=sys.stderr,
    )
    if not args.question and not args.chat:
        return 0

    llm = OpenVINO(
        model=args.model, device=args.device, weight_format=args.weight_format, max_new_tokens=args.max_tokens
    )
    if not args.chat:
        response = query_engine(index, llm, args.top_k, args.reranker).query(args.question)
        print_answer(response.response_gen, response.source_nodes)
        return 0

    engine = chat_engine(index, llm, args.top_k, args.reranker)
    question = args.question
    while True:
        if question is None:
            print("> ", end="", file=sys.stderr, flush=True)
            line = sys.stdin.readline()
            if not line.strip():  # end of input or an empty line
                return 0
            question = line.strip()
        response = engine.stream_chat(question)
        print_answer(response.response_gen, response.source_nodes)
        print()
        question = None


if __name__ == "__main__":
    sys.exit(main())
