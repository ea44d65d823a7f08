"""ChatOpenVINO inside LangGraph and LCEL apps: a tool-calling agent loop and a streaming RAG chain.

Both check the model's judgment (it answers with the tool's result, with a fact only the context
has), so they run on the real-model tier's model, not on SmolLM2-135M.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from langchain_openvino import ChatOpenVINO, OpenVINOEmbeddings

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


@tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers and return the product."""
    return a * b


def test_langgraph_agent_calls_the_tool_and_answers_with_its_result(real_model: str) -> None:
    llm = ChatOpenVINO(model=real_model, max_tokens=48, temperature=0)
    tools = [multiply]

    def agent(state: MessagesState) -> dict[str, list[AIMessage]]:
        # A hand-made graph that asks for a tool call until a tool result is in, then for the answer.
        # (tests/real/test_agents.py leaves the choice to the model, in create_react_agent.)
        answered_by_tool = isinstance(state["messages"][-1], ToolMessage)
        model = llm.bind_tools(tools, tool_choice="none" if answered_by_tool else "required")
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition, {"tools": "tools", END: END})
    graph.add_edge("tools", "agent")
    app = graph.compile()

    question = [
        SystemMessage("You are a calculator. Use the tools, then answer in one sentence."),
        HumanMessage("What is 123 times 457?"),
    ]
    result = app.invoke({"messages": question}, {"recursion_limit": 6})
    _, _, call, tool_result, answer = result["messages"]
    assert isinstance(call, AIMessage) and [(c["name"], c["args"]) for c in call.tool_calls] == [
        ("multiply", {"a": 123, "b": 457})
    ]
    assert isinstance(tool_result, ToolMessage)
    assert tool_result.tool_call_id == call.tool_calls[0]["id"] and tool_result.content == "56211"
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert "56211" in answer.content  # a 0.5B model cannot multiply these reliably itself: it used the result


DOCS = [
    "The Zorbian Society was founded in 1874 by a baker named Ottoline Grebe.",
    "Bananas are rich in potassium and grow in tropical climates.",
    "The river Vellin flows through the town of Marsk and ends in the Northern Sea.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
]


def _format_docs(docs: list[Document]) -> str:
    return "\n".join(d.page_content for d in docs)


async def test_rag_chain_streams_an_answer_from_the_retrieved_document(minilm_dir: Path, real_model: str) -> None:
    store = InMemoryVectorStore.from_texts(DOCS, OpenVINOEmbeddings(model=minilm_dir))
    retriever = store.as_retriever(search_kwargs={"k": 1})
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer the question using only this context:\n{context}"), ("human", "{question}")]
    )
    chain = (
        {"context": retriever | _format_docs, "question": RunnablePassthrough()}
        | prompt
        | ChatOpenVINO(model=real_model, max_tokens=40, temperature=0)
        | StrOutputParser()
    )
    question = "Which town does the river Vellin flow through?"
    assert retriever.invoke(question)[0].page_content == DOCS[2]
    chunks = [chunk async for chunk in chain.astream(question)]
    assert len([c for c in chunks if c]) > 3
    assert "Marsk" in "".join(chunks)  # a made-up town: only the retrieved context has it

    sync_chunks = list(chain.stream("Who founded the Zorbian Society?"))
    assert len(sync_chunks) > 3 and "Ottoline Grebe" in "".join(sync_chunks)
