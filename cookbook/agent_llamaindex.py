"""A LlamaIndex FunctionAgent on a local OpenVINO model, with a calculator, a document search and a page reader.

    python cookbook/agent_llamaindex.py --question "What is 17 plus 25?"
    python cookbook/agent_llamaindex.py --question "Fetch https://example.com and summarise it" --device CPU

The same agent as ``agent_langgraph.py``, on LlamaIndex: a ``FunctionAgent`` over ``OpenVINO``
with three ``FunctionTool`` s, and each tool call and result printed as it happens (from the
workflow's event stream), then the answer streamed.

- ``calculator`` and ``fetch_page``: the plain functions of ``agent_tools.py``. When the question
  contains URLs, ``fetch_page``'s ``url`` argument is constrained to them (small models garble
  URLs they copy; constrained decoding makes the copy exact).
- ``search_docs``: a search over the index of ``rag_llamaindex.py`` (same ``--docs`` and ``--db``).

The default model (SmolLM2-135M) is tiny, so the agent's first step is a required tool call
(``--first-tool``: "required", a tool name, or "auto" for a larger model).

Needs ``pip install "openvino-llm[cookbook]"``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

from llama_index.core import VectorStoreIndex
from llama_index.core.agent.workflow import AgentStream, FunctionAgent, ToolCall, ToolCallResult
from llama_index.core.llms import ChatMessage, ChatResponse, MessageRole
from llama_index.core.tools import AsyncBaseTool, FunctionTool
from pydantic import Field, create_model

import agent_tools
import rag_llamaindex
from llama_index_openvino import OpenVINO, OpenVINOEmbedding


def make_search_docs(index: VectorStoreIndex, k: int = 2) -> FunctionTool:
    """A tool that searches ``index`` and returns the best passages with their source files."""
    retriever = index.as_retriever(similarity_top_k=k)

    def search_docs(query: str) -> str:
        """Search the project's documentation for query and return the relevant passages with their file names."""
        nodes = retriever.retrieve(query)
        return "\n\n".join(f"[{n.node.metadata['source']}]\n{n.node.get_content()}" for n in nodes) or "no results"

    return FunctionTool.from_defaults(search_docs)


def make_fetch_page(urls: Sequence[str] = ()) -> FunctionTool:
    """``fetch_page``; with ``urls``, its argument must be one of them."""
    if not urls:
        return FunctionTool.from_defaults(agent_tools.fetch_page)
    url_type: Any = Literal[tuple(dict.fromkeys(urls))]
    schema = create_model("fetch_page", url=(url_type, Field(description="the page's URL")))
    return FunctionTool.from_defaults(agent_tools.fetch_page, fn_schema=schema)


class ToolThenAnswerAgent(FunctionAgent):
    """A FunctionAgent whose steps after a tool call see the tool results as plain context, without tools.

    A small model shown the whole history copies its tool markup instead of answering; this short
    prompt keeps it on the question. (Drop this class and use FunctionAgent with a larger model.)
    """

    async def _get_streaming_response(
        self, ctx: Any, current_llm_input: list[ChatMessage], tools: Sequence[AsyncBaseTool]
    ) -> ChatResponse:
        results = [m.content or "" for m in current_llm_input if m.role == MessageRole.TOOL]
        if not results:
            return await super()._get_streaming_response(ctx, current_llm_input, tools)
        question = next(m for m in reversed(current_llm_input) if m.role == MessageRole.USER)
        turn = agent_tools.answer_turn(question.content or "", results)
        response = ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))
        async for response in await self.llm.astream_chat(
            [
                ChatMessage(role=MessageRole.SYSTEM, content=agent_tools.ANSWER_PROMPT),
                ChatMessage(role=MessageRole.USER, content=turn),
            ]
        ):
            ctx.write_event_to_stream(
                AgentStream(
                    delta=response.delta or "",
                    response=response.message.content or "",
                    tool_calls=[],
                    raw=response.raw,
                    current_agent_name=self.name,
                )
            )
        return response


def build_agent(llm: OpenVINO, index: VectorStoreIndex, question: str, first_tool: str = "required") -> FunctionAgent:
    """The agent for one question (``fetch_page`` is constrained to the URLs the question contains)."""
    tools = [
        FunctionTool.from_defaults(agent_tools.calculator),
        make_search_docs(index),
        make_fetch_page(agent_tools.URL.findall(question)),
    ]
    return ToolThenAnswerAgent(
        tools=tools,
        llm=llm,
        system_prompt=agent_tools.SYSTEM_PROMPT,
        initial_tool_choice=None if first_tool == "auto" else first_tool,
    )


async def run(agent: FunctionAgent, question: str) -> AsyncIterator[agent_tools.Event]:
    """Run the agent on ``question``, yielding tool calls and results as they happen and the answer's tokens."""
    handler = agent.run(user_msg=question)
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            yield agent_tools.Event("tool_result", name=event.tool_name, text=str(event.tool_output.content))
        elif isinstance(event, ToolCall):
            yield agent_tools.Event("tool_call", name=event.tool_name, args=event.tool_kwargs)
        elif isinstance(event, AgentStream) and event.delta:
            yield agent_tools.Event("token", text=event.delta)
    await handler  # raises what the workflow raised


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A LlamaIndex FunctionAgent with a calculator, a document search and a page reader, on OpenVINO.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--question", "-q", required=True, help="what to ask the agent")
    parser.add_argument("--model", help="chat model: name, IR, .gguf, checkpoint or hub id; None: qwen2.5-coder-0.5b")
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: CPU, GPU, NPU, AUTO, ...")
    parser.add_argument("--weight-format", help="weight format when exporting a Hugging Face model: int4, int8, fp16")
    parser.add_argument("--docs", type=Path, nargs="+", default=list(rag_llamaindex.DEFAULT_DOCS), help="searched")
    parser.add_argument("--db", type=Path, default=rag_llamaindex.DEFAULT_DB, help="Chroma folder of the index")
    parser.add_argument(
        "--first-tool", default="required", help='first step\'s tool choice: "required", "auto" or a tool name'
    )
    parser.add_argument("--max-tokens", type=int, default=128, help="longest model turn, in tokens")
    return parser


async def amain(args: argparse.Namespace) -> int:
    index = rag_llamaindex.open_index(args.db, OpenVINOEmbedding(device=args.device))
    rag_llamaindex.index_documents(index, rag_llamaindex.find_documents(args.docs))
    # Greedy decoding: tool arguments are copied from the question, not sampled.
    llm = OpenVINO(
        model=args.model,
        device=args.device,
        weight_format=args.weight_format,
        max_new_tokens=args.max_tokens,
        temperature=0,
    )
    agent = build_agent(llm, index, args.question, args.first_tool)
    show = agent_tools.EventPrinter()
    async for event in run(agent, args.question):
        show(event)
    show.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
