"""A LangGraph agent on a local OpenVINO model, with a calculator, a document search and a web page reader.

    python cookbook/agent_langgraph.py --question "What is 1234 multiplied by 5678?"
    python cookbook/agent_langgraph.py --question "What does the README say about devices?" --device CPU
    python cookbook/agent_langgraph.py --question "Summarise https://example.com" --first-tool fetch_page

The graph is the usual LangGraph tool loop: an ``agent`` node (``ChatOpenVINO`` with the tools
bound) and a ``tools`` node (``ToolNode``) that runs the calls it asks for, until the model answers
in text. Each tool call and its result are printed as they happen, then the answer is streamed.

The tools:

- ``calculator``: add, subtract, multiply, divide, power or modulo of two numbers.
- ``search_docs``: a search over the RAG index of ``rag_langchain.py`` (same ``--docs`` and ``--db``).
- ``fetch_page``: downloads a web page and returns its text.

The default model (SmolLM2-135M) is tiny, so the first step is a required tool call (the model
picks the tool; ``--first-tool NAME`` picks it for the model) and, after ``--max-tool-calls``
rounds, the model answers from the tool results. A larger model can run with ``--first-tool auto``.

Needs ``pip install "openvino-llm[cookbook]"``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

from langchain_chroma import Chroma
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import Field

import agent_tools
import rag_langchain
from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings

# The plain functions become LangChain tools (name, description and argument schema from their signatures).
calculator = tool(agent_tools.calculator)
fetch_page = tool(agent_tools.fetch_page)


# --- search_docs ---------------------------------------------------------------------------------------------


def make_search_docs(store: Chroma, k: int = 2) -> BaseTool:
    """A tool that searches the RAG index in ``store`` and returns the best chunks with their source files."""

    @tool
    def search_docs(query: Annotated[str, Field(max_length=80)]) -> str:
        """Search the project's documentation for query and return the relevant passages with their file names."""
        docs = store.similarity_search(query, k=k)
        return "\n\n".join(f"[{doc.metadata['source']}]\n{doc.page_content}" for doc in docs) or "no results"

    return search_docs


def default_tools(store: Chroma) -> list[BaseTool]:
    """calculator, search_docs over ``store`` and fetch_page."""
    return [calculator, make_search_docs(store), fetch_page]


# --- the graph -----------------------------------------------------------------------------------------------


def tool_schemas(tools: Sequence[BaseTool], urls: Sequence[str]) -> list[dict[str, Any]]:
    """The tools' OpenAI-style schemas; when the user wrote URLs, fetch_page's ``url`` must be one of them.

    Small models garble URLs they copy; constrained decoding to an ``enum`` makes the copy exact.
    """
    schemas = [convert_to_openai_tool(t) for t in tools]
    for schema in schemas:
        if schema["function"]["name"] == fetch_page.name and urls:
            schema["function"]["parameters"]["properties"]["url"]["enum"] = list(dict.fromkeys(urls))
    return schemas


def answer_prompt(messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    """The last step's prompt: the tool results as plain context, then the user's question.

    A small model shown the whole history copies its tool markup instead of answering; this short
    prompt keeps it on the question.
    """
    question = next(m for m in reversed(messages) if isinstance(m, HumanMessage))
    results = [f"{m.name}: {m.content}" for m in messages if isinstance(m, ToolMessage)]
    return [
        SystemMessage(agent_tools.ANSWER_PROMPT),
        HumanMessage(agent_tools.answer_turn(str(question.content), results)),
    ]


def build_agent(
    llm: ChatOpenVINO, tools: Sequence[BaseTool], first_tool: str = "required", max_tool_calls: int = 1
) -> CompiledStateGraph:
    """The agent graph: ``agent`` -> (``tools`` -> ``agent``)* -> end.

    ``first_tool`` is the first step's tool_choice ("required": some tool, a tool name, or "auto");
    after ``max_tool_calls`` rounds of tool calls the model answers from the tool results.
    """

    def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        messages = state["messages"]
        rounds = sum(isinstance(m, AIMessage) and bool(m.tool_calls) for m in messages)
        if rounds >= max_tool_calls:
            return {"messages": [llm.invoke(answer_prompt(messages))]}
        choice = first_tool if rounds == 0 else "auto"
        urls = [u for m in messages if isinstance(m, HumanMessage) for u in agent_tools.URL.findall(str(m.content))]
        model = llm.bind_tools(tool_schemas(tools, urls), tool_choice=choice)
        return {"messages": [model.invoke([SystemMessage(agent_tools.SYSTEM_PROMPT), *messages])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    return graph.compile()


def run(agent: CompiledStateGraph, question: str) -> Iterator[agent_tools.Event]:
    """Run the agent on ``question``, yielding tool calls and results as they happen and the answer's tokens."""
    stream = agent.stream({"messages": [("human", question)]}, stream_mode=["messages", "updates"])
    for mode, data in stream:
        if mode == "messages":
            chunk, meta = data
            if isinstance(chunk, AIMessageChunk) and meta.get("langgraph_node") == "agent" and chunk.content:
                yield agent_tools.Event("token", text=str(chunk.content))
            continue
        for update in data.values():
            for message in (update or {}).get("messages", []):
                if isinstance(message, AIMessage):
                    for call in message.tool_calls:
                        yield agent_tools.Event("tool_call", name=call["name"], args=call["args"])
                elif isinstance(message, ToolMessage):
                    yield agent_tools.Event("tool_result", name=message.name or "", text=str(message.content))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A LangGraph agent with a calculator, a document search and a web page reader, on OpenVINO.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--question", "-q", required=True, help="what to ask the agent")
    parser.add_argument("--model", help="chat model: name, IR, .gguf, checkpoint or hub id; None: qwen2.5-coder-0.5b")
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: CPU, GPU, NPU, AUTO, ...")
    parser.add_argument("--weight-format", help="weight format when exporting a Hugging Face model: int4, int8, fp16")
    parser.add_argument("--docs", type=Path, nargs="+", default=list(rag_langchain.DEFAULT_DOCS), help="searched")
    parser.add_argument("--db", type=Path, default=rag_langchain.DEFAULT_DB, help="Chroma folder of the RAG index")
    parser.add_argument(
        "--first-tool", default="required", help='first step\'s tool choice: "required", "auto" or a tool name'
    )
    parser.add_argument("--max-tool-calls", type=int, default=1, help="rounds of tool calls before the answer")
    parser.add_argument("--max-tokens", type=int, default=128, help="longest model turn, in tokens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    store = rag_langchain.open_store(args.db, OpenVINOEmbeddings(device=args.device))
    rag_langchain.index_documents(store, rag_langchain.find_documents(args.docs))
    # Greedy decoding: tool arguments are copied from the question, not sampled.
    llm = ChatOpenVINO(
        model=args.model,
        device=args.device,
        weight_format=args.weight_format,
        max_tokens=args.max_tokens,
        temperature=0,
    )
    agent = build_agent(llm, default_tools(store), args.first_tool, args.max_tool_calls)
    show = agent_tools.EventPrinter()
    for event in run(agent, args.question):
        show(event)
    show.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
