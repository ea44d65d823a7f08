"""The peers ``openvino-llm bench`` compares our paths with, each measured only when installed.

HuggingFacePipeline(backend="openvino") behind ChatHuggingFace, LlamaIndex's OpenVINOGenAILLM,
llama-cpp-python (on the source GGUF) and transformers on PyTorch (on the source checkpoint or the
GGUF's dequantized weights). Each is a builder like our paths in :mod:`~openvino_llm.bench.systems`;
a peer that does not report its output tokens has its text counted with the model's own tokenizer.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..types import Message
from .systems import (
    Clock,
    Runner,
    Sample,
    System,
    SystemContext,
    Unavailable,
    core_engine,
    lc_messages,
    li_messages,
    require,
)


def _count(ctx: SystemContext, text: str) -> int:
    """Output tokens of a peer that does not report them: its text encoded with the model's own tokenizer."""
    if ctx.count_tokens is None:
        ctx.count_tokens = core_engine(ctx).count_tokens
    return ctx.count_tokens(text)


def _timed_text(ctx: SystemContext, stream: Callable[[], Iterable[str | None]]) -> Sample:
    """Time the text pieces ``stream()`` yields (started on the clock); output tokens counted by :func:`_count`."""
    clock = Clock()
    parts = []
    for text in stream():
        clock.text(text)
        parts.append(text or "")
    return clock.sample(_count(ctx, "".join(parts)))


def _build_langchain_huggingface(ctx: SystemContext) -> Runner:
    lch = require("langchain_huggingface", "langchain-huggingface")
    if ctx.model_kind != "ir":
        raise Unavailable(
            "not applicable",
            "HuggingFacePipeline(backend='openvino') loads an OpenVINO IR / Hugging Face folder, not a GGUF file",
        )
    llm = lch.HuggingFacePipeline.from_model_id(
        model_id=str(ctx.model_path),
        task="text-generation",
        backend="openvino",
        model_kwargs={"device": ctx.device, "ov_config": ctx.properties},
        pipeline_kwargs={"max_new_tokens": ctx.max_new_tokens, "do_sample": False},
    )
    chat = lch.ChatHuggingFace(llm=llm, model_id=str(ctx.model_path))

    def run(messages: list[Message]) -> Sample:
        return _timed_text(ctx, lambda: (str(chunk.content) for chunk in chat.stream(lc_messages(messages))))

    return run


def _build_llama_index_openvino_genai(ctx: SystemContext) -> Runner:
    mod = require("llama_index.llms.openvino_genai", "llama-index-llms-openvino-genai")
    llm = mod.OpenVINOGenAILLM(model_path=str(ctx.model_path), device=ctx.device, config=ctx.properties)
    llm.config.max_new_tokens = ctx.max_new_tokens
    llm.config.do_sample = False
    llm.config.apply_chat_template = False  # it renders the chat template itself; openvino-genai would apply it again

    def run(messages: list[Message]) -> Sample:
        return _timed_text(ctx, lambda: (part.delta for part in llm.stream_chat(li_messages(messages))))

    return run


def _build_llama_cpp(ctx: SystemContext) -> Runner:
    llama_cpp = require("llama_cpp", "llama-cpp-python")
    gguf = ctx.source_gguf or (ctx.model_path if ctx.model_kind == "gguf" else None)
    if gguf is None:
        raise Unavailable("not applicable", "llama-cpp-python runs GGUF files; MODEL is not one")
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=2048, n_threads=os.cpu_count(), verbose=False)

    def run(messages: list[Message]) -> Sample:
        clock = Clock()
        n = 0
        for part in llm.create_chat_completion(
            messages=list(messages),
            max_tokens=ctx.max_new_tokens,
            temperature=0.0,
            stream=True,  # type: ignore[arg-type]
        ):
            text = part["choices"][0]["delta"].get("content")  # type: ignore[index]
            if text:
                clock.text(text)
                n += 1  # llama.cpp streams one token per chunk
        return clock.sample(n)

    return run


def _build_transformers_torch(ctx: SystemContext) -> Runner:
    torch = require("torch", "torch")
    transformers = require("transformers", "transformers")
    if ctx.source_checkpoint is not None:
        where: dict[str, Any] = {"pretrained_model_name_or_path": str(ctx.source_checkpoint)}
    elif ctx.source_gguf is not None:  # transformers dequantizes a GGUF (needs the gguf package)
        where = {"pretrained_model_name_or_path": str(ctx.source_gguf.parent), "gguf_file": ctx.source_gguf.name}
    else:
        raise Unavailable("not applicable", "transformers needs the Hugging Face checkpoint or GGUF; MODEL is an IR")
    tokenizer = transformers.AutoTokenizer.from_pretrained(**where)
    model = transformers.AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    model.eval()
    torch.set_num_threads(os.cpu_count() or 1)
    eos = model.generation_config.eos_token_id

    def pieces(messages: list[Message]) -> Iterator[str]:
        prompt = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = transformers.TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = {"max_new_tokens": ctx.max_new_tokens, "do_sample": False, "streamer": streamer}
        worker = threading.Thread(
            target=model.generate, kwargs={**inputs, **kwargs, "eos_token_id": eos, "pad_token_id": eos}
        )
        worker.start()
        yield from streamer
        worker.join()

    def run(messages: list[Message]) -> Sample:
        return _timed_text(ctx, lambda: pieces(messages))

    return run


#: Peers measured when installed.
PEERS: dict[str, System] = {
    "langchain-huggingface": System(
        'HuggingFacePipeline(backend="openvino") + ChatHuggingFace',
        _build_langchain_huggingface,
        ("langchain-huggingface",),
    ),
    "llama-index-openvino-genai": System(
        "OpenVINOGenAILLM.stream_chat", _build_llama_index_openvino_genai, ("llama-index-llms-openvino-genai",)
    ),
    "llama-cpp-python": System(
        "llama_cpp.Llama.create_chat_completion(stream=True)", _build_llama_cpp, ("llama-cpp-python",)
    ),
    "transformers-torch": System(
        "transformers generate on PyTorch (CPU) + TextIteratorStreamer",
        _build_transformers_torch,
        ("transformers", "torch"),
    ),
}

__all__ = ["PEERS"]
