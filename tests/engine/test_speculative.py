"""Speculative decoding (a draft model) and prompt lookup on the tiny Llama, through the core engine.

Greedy output with speculation must equal greedy output without it: the main model keeps only the
tokens it would have chosen itself. Compared under the exact-precision ov_config, where checking
several tokens in one pass rounds like checking them one by one.

Two drafts share the tiny model's tokenizer: the tiny model itself (every proposal is accepted, so
each step delivers several tokens) and a one-layer cut of it (proposals are often rejected, so the
draft's cache is rolled back). SmolLM2 (another tokenizer) is the draft that must be refused.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from filelock import FileLock
from tests._shared import EXACT, MULTIPLY

from openvino_llm import Engine, GenerationParams, InvalidParameterError, load_engine

PROMPTS = [
    "Numbers: one, two, three",
    "The capital of France is",
    "Repeat after me: the quick brown fox jumps over the lazy dog. The quick brown fox",
    "Once upon a time there was a little house at the edge of a green forest.",
]
GREEDY = GenerationParams(temperature=0.0, max_new_tokens=40)
DRAFT_BUILDER_VERSION = "1"


# ---- models and engines ------------------------------------------------------------------------


def _build_cut_draft(main_hf: Path, out: Path) -> None:
    """The tiny Llama's first layer only (same embeddings, head and tokenizer files): a weak draft."""
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(main_hf, torch_dtype=torch.float32)
    model.model.layers = model.model.layers[:1]
    model.config.num_hidden_layers = 1
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        if (main_hf / name).exists():
            shutil.copy(main_hf / name, out / name)
    (out / "DRAFT_BUILDER_VERSION").write_text(DRAFT_BUILDER_VERSION)


@pytest.fixture(scope="session")
def cut_draft_model(tiny_hf_dir: Path, cache_dir: Path) -> Path:
    """The one-layer draft as an OpenVINO IR folder (built once into the test cache)."""
    from openvino_llm.models import resolve_model

    root = tiny_hf_dir.parent
    target = root / f"tiny-llama-cut-draft-v{DRAFT_BUILDER_VERSION}"
    with FileLock(str(root / f"{target.name}.lock")):
        if not (target / "DRAFT_BUILDER_VERSION").exists():
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-cut-draft-", dir=root))
            try:
                _build_cut_draft(tiny_hf_dir, tmp)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(tmp, target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return resolve_model(target).path


@pytest.fixture(scope="module")
def plain(tiny_model: Path) -> Engine:
    return load_engine(tiny_model, device="CPU", ov_config=EXACT)


@pytest.fixture(scope="module")
def self_draft(tiny_model: Path) -> Engine:
    """The tiny model drafting for itself: every proposed token is accepted."""
    return load_engine(tiny_model, device="CPU", ov_config=EXACT, draft_model=tiny_model)


@pytest.fixture(scope="module")
def cut_draft(tiny_model: Path, cut_draft_model: Path) -> Engine:
    """The one-layer cut drafting for the tiny model: proposals are accepted and rejected."""
    return load_engine(tiny_model, device="CPU", ov_config=EXACT, draft_model=cut_draft_model, num_assistant_tokens=4)


@pytest.fixture(scope="module")
def lookup(tiny_model: Path) -> Engine:
    return load_engine(tiny_model, device="CPU", ov_config=EXACT, prompt_lookup=True)


@pytest.fixture(scope="module")
def expected(plain: Engine) -> dict[str, tuple[str, int, int]]:
    """Each prompt's greedy (text, input tokens, output tokens) without speculation."""
    out = {}
    for prompt in PROMPTS:
        gen = plain.generate(prompt, GREEDY)
        out[prompt] = (gen.text, gen.usage.input_tokens, gen.usage.output_tokens)
    return out


def _stream(engine: Engine, prompt: str, params: GenerationParams = GREEDY) -> tuple[str, int, int, int]:
    """(text, input tokens, output tokens, number of text chunks) of a stream."""
    chunks = list(engine.stream(prompt, params))
    final = chunks[-1]
    assert final.is_final and final.usage is not None
    assert all(not c.is_final for c in chunks[:-1])
    return "".join(c.text for c in chunks), final.usage.input_tokens, final.usage.output_tokens, len(chunks)


# ---- same output -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["self_draft", "cut_draft", "lookup"])
def test_greedy_with_speculation_equals_greedy_without(
    name: str, request: pytest.FixtureRequest, expected: dict[str, tuple[str, int, int]]
) -> None:
    engine: Engine = request.getfixturevalue(name)
    assert engine.speculation is not None
    for prompt in PROMPTS:
        gen = engine.generate(prompt, GREEDY)
        assert (gen.text, gen.usage.input_tokens, gen.usage.output_tokens) == expected[prompt], prompt
        assert gen.finish_reason == ("length" if expected[prompt][2] == GREEDY.max_new_tokens else "stop")
        text, n_in, n_out, _ = _stream(engine, prompt)
        assert (text, n_in, n_out) == expected[prompt], prompt


def test_speculation_delivers_several_tokens_per_step(
    plain: Engine, self_draft: Engine, expected: dict[str, tuple[str, int, int]]
) -> None:
    prompt = PROMPTS[0]
    text, _, n_out, plain_chunks = _stream(plain, prompt)
    spec_text, _, spec_out, spec_chunks = _stream(self_draft, prompt)
    assert (spec_text, spec_out) == (text, n_out) == (expected[prompt][0], expected[prompt][2])
    # 5 proposals accepted per step + the main model's own token: about 40 / 6 steps, not 40
    assert spec_chunks <= n_out // 3 < plain_chunks


@pytest.mark.parametrize(
    "params",
    [
        GenerationParams(temperature=0.0, max_new_tokens=40, num_assistant_tokens=1),
        GenerationParams(temperature=0.0, max_new_tokens=40, num_assistant_tokens=9),
        GenerationParams(temperature=0.0, max_new_tokens=40, assistant_confidence_threshold=0.2),
    ],
    ids=["1-token", "9-tokens", "threshold"],
)
def test_request_knobs_keep_the_output(
    params: GenerationParams, cut_draft: Engine, expected: dict[str, tuple[str, int, int]]
) -> None:
    for prompt in PROMPTS[:2]:
        gen = cut_draft.generate(prompt, params)
        assert (gen.text, gen.usage.input_tokens, gen.usage.output_tokens) == expected[prompt]


def test_engine_wide_threshold_and_lookup_knobs(tiny_model: Path, expected: dict[str, tuple[str, int, int]]) -> None:
    by_threshold = load_engine(tiny_model, device="CPU", ov_config=EXACT, draft_model=tiny_model,
                               assistant_confidence_threshold=0.5)  # fmt: skip
    assert by_threshold.speculation is not None and by_threshold.speculation.assistant_confidence_threshold == 0.5
    long_lookup = load_engine(tiny_model, device="CPU", ov_config=EXACT, prompt_lookup=True, max_ngram_size=5,
                              num_assistant_tokens=8)  # fmt: skip
    assert long_lookup.speculation is not None and long_lookup.speculation.max_ngram_size == 5
    for engine in (by_threshold, long_lookup):
        for prompt in PROMPTS[1:3]:
            gen = engine.generate(prompt, GREEDY)
            assert (gen.text, gen.usage.input_tokens, gen.usage.output_tokens) == expected[prompt]


async def test_astream_with_draft_and_lookup(
    cut_draft: Engine, lookup: Engine, expected: dict[str, tuple[str, int, int]]
) -> None:
    for engine in (cut_draft, lookup):
        for prompt in PROMPTS[:2]:
            chunks = [c async for c in engine.astream(prompt, GREEDY)]
            assert chunks[-1].usage is not None
            assert "".join(c.text for c in chunks) == expected[prompt][0]
            assert chunks[-1].usage.output_tokens == expected[prompt][2]


def test_stop_string_with_speculation(plain: Engine, cut_draft: Engine, lookup: Engine) -> None:
    base = plain.generate(PROMPTS[0], GREEDY).text
    stop = base[10:14]  # a piece of the greedy output: generation ends right before it
    assert stop and stop.strip()
    params = GenerationParams(temperature=0.0, max_new_tokens=40, stop=(stop,))
    want = plain.generate(PROMPTS[0], params)
    assert want.finish_reason == "stop" and stop not in want.text
    for engine in (cut_draft, lookup):
        gen = engine.generate(PROMPTS[0], params)
        assert (gen.text, gen.finish_reason) == (want.text, "stop")
        assert gen.usage.output_tokens < GREEDY.max_new_tokens


# ---- concurrency -------------------------------------------------------------------------------


def test_concurrent_requests_with_a_draft(cut_draft: Engine, expected: dict[str, tuple[str, int, int]]) -> None:
    """Eight requests at once (two of them cut short by the caller) give their sequential outputs."""
    jobs = [PROMPTS[i % len(PROMPTS)] for i in range(8)]
    start = threading.Barrier(len(jobs))

    def run(i: int) -> tuple[str, int] | None:
        start.wait()
        if i in (3, 6):  # closed after two chunks: cancelled in the batch, the others go on
            stream = cut_draft.stream(jobs[i], GREEDY)
            for n, _ in enumerate(stream):
                if n == 1:
                    stream.close()  # type: ignore[attr-defined]
                    return None
        gen = cut_draft.generate(jobs[i], GREEDY)
        return gen.text, gen.usage.output_tokens

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(run, range(len(jobs))))
    for i, result in enumerate(results):
        if i in (3, 6):
            assert result is None
        else:
            assert result == (expected[jobs[i]][0], expected[jobs[i]][2]), jobs[i]
    assert cut_draft.active_requests == 0


async def test_concurrent_astreams_with_lookup(lookup: Engine, expected: dict[str, tuple[str, int, int]]) -> None:
    async def one(prompt: str) -> tuple[str, int]:
        text, n_out = "", 0
        async for chunk in lookup.astream(prompt, GREEDY):
            text += chunk.text
            if chunk.usage is not None:
                n_out = chunk.usage.output_tokens
        return text, n_out

    results = await asyncio.gather(*(one(p) for p in PROMPTS * 2))
    assert results == [(expected[p][0], expected[p][2]) for p in PROMPTS * 2]


# ---- refusals, before any work -------------------------------------------------------------------


def test_draft_of_another_tokenizer_is_refused(tiny_model: Path, smollm2_gguf: Path) -> None:
    with pytest.raises(InvalidParameterError, match="does not share the tokenizer") as info:
        load_engine(smollm2_gguf, device="CPU", draft_model=tiny_model)
    assert "same family" in str(info.value)


def test_gguf_draft_is_refused_with_the_export_command(tiny_model: Path, tiny_hf_dir: Path, tmp_path: Path) -> None:
    # openvino-genai's draft_model() reads only IR folders: a GGUF it would load directly (Q8_0) is refused
    # (files it reads inexactly, such as SmolLM2's Q4_1, are re-exported to an IR and then accepted)
    from tests.models._gguf_files import write_tiny_gguf

    draft = write_tiny_gguf(tiny_hf_dir, tmp_path / "tiny-q8_0.gguf", "Q8_0")
    with pytest.raises(InvalidParameterError, match="not an OpenVINO IR folder") as info:
        load_engine(tiny_model, device="CPU", draft_model=draft)
    assert "openvino-llm export" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"draft_model": "x", "prompt_lookup": True}, "not both"),
        ({"prompt_lookup": True, "assistant_confidence_threshold": 0.5}, "needs a draft model"),
        ({"draft_model": "x", "num_assistant_tokens": 3, "assistant_confidence_threshold": 0.5}, "not both"),
        ({"max_ngram_size": 3}, "prompt lookup setting"),
        ({"num_assistant_tokens": 3}, "need speculative decoding"),
        ({"prompt_lookup": True, "num_assistant_tokens": 0}, "int >= 1"),
        ({"draft_model": "x", "assistant_confidence_threshold": 1.5}, r"\(0, 1\]"),
        ({"prompt_lookup": "yes"}, "True or False"),
        ({"draft_model": "x", "backend": "optimum"}, "openvino-genai"),
        ({"draft_device": "CPU"}, "need a draft_model"),
    ],
)
def test_bad_speculation_arguments_fail_before_the_model_is_read(kwargs: dict, message: str, tmp_path: Path) -> None:
    # the model does not exist: the arguments are refused before anything looks for it
    with pytest.raises(InvalidParameterError, match=message):
        load_engine(tmp_path / "missing-model", device="CPU", **kwargs)


def test_request_knobs_need_a_speculating_engine(plain: Engine, lookup: Engine) -> None:
    with pytest.raises(InvalidParameterError, match="draft_model"):
        plain.stream("Hi", GenerationParams(num_assistant_tokens=3))
    with pytest.raises(InvalidParameterError, match="needs a draft model"):
        lookup.stream("Hi", GenerationParams(assistant_confidence_threshold=0.3))
    with pytest.raises(InvalidParameterError, match="not both"):
        GenerationParams(num_assistant_tokens=3, assistant_confidence_threshold=0.3)
    with pytest.raises(InvalidParameterError, match="num_assistant_tokens"):
        GenerationParams(num_assistant_tokens=0)


def test_engine_cache_key_covers_speculation(
    tiny_model: Path, plain: Engine, self_draft: Engine, lookup: Engine, cut_draft: Engine
) -> None:
    assert load_engine(tiny_model, device="CPU", ov_config=EXACT, draft_model=tiny_model) is self_draft
    assert load_engine(tiny_model, device="CPU", ov_config=EXACT, prompt_lookup=True) is lookup
    assert len({id(plain), id(self_draft), id(lookup), id(cut_draft)}) == 4
    assert self_draft.speculation is not None and json.loads(self_draft.speculation.key())["mode"] == "draft"
    other = load_engine(tiny_model, device="CPU", ov_config=EXACT, prompt_lookup=True, num_assistant_tokens=2)
    try:
        assert other is not lookup
    finally:
        other.close()


# ---- adapters ----------------------------------------------------------------------------------


def test_langchain_chat_model_passes_speculation_through(
    tiny_model: Path, self_draft: Engine, lookup: Engine, plain: Engine
) -> None:
    pytest.importorskip("langchain_core")
    from langchain_openvino import ChatOpenVINO

    want = plain.generate(PROMPTS[1], GREEDY).text
    for kwargs, engine in (({"draft_model": tiny_model}, self_draft), ({"prompt_lookup": True}, lookup)):
        llm = ChatOpenVINO(model=tiny_model, device="CPU", ov_config=EXACT, temperature=0, max_tokens=40, **kwargs)
        assert llm._engine is engine
        assert llm.invoke(PROMPTS[1]).content == want
        assert "".join(str(c.content) for c in llm.stream(PROMPTS[1])) == want


def test_llama_index_llm_passes_speculation_through(
    tiny_model: Path, self_draft: Engine, lookup: Engine, plain: Engine
) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index_openvino import OpenVINO

    want = plain.generate(PROMPTS[1], GREEDY).text
    for kwargs, engine in (({"draft_model": str(tiny_model)}, self_draft), ({"prompt_lookup": True}, lookup)):
        llm = OpenVINO(model=str(tiny_model), device="CPU", ov_config=EXACT, temperature=0, max_new_tokens=40, **kwargs)
        assert llm._engine is engine
        assert llm.complete(PROMPTS[1]).text == want
        assert "".join(r.delta or "" for r in llm.stream_complete(PROMPTS[1])) == want


# ---- tools and structured output ---------------------------------------------------------------


def test_tools_and_structured_output_with_prompt_lookup(smollm2_gguf: Path) -> None:
    """SmolLM2's forced tool call, free answer and JSON output are the same with prompt lookup."""
    plain = load_engine(smollm2_gguf, device="CPU", ov_config=EXACT)
    lookup = load_engine(smollm2_gguf, device="CPU", ov_config=EXACT, prompt_lookup=True)
    person = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    greedy = GenerationParams(temperature=0, max_new_tokens=64)
    cases = [
        ("What is 6 times 7?", greedy.merged(tools=(MULTIPLY,), tool_choice="multiply")),
        ("What is 6 times 7?", greedy.merged(tools=(MULTIPLY,))),
        ("Alice is 30 years old. Give her as JSON.", greedy.merged(json_schema=person)),
    ]
    for prompt, params in cases:
        want, got = plain.generate(prompt, params), lookup.generate(prompt, params)
        calls = [(c.name, c.arguments) for c in got.tool_calls]
        want_calls = [(c.name, c.arguments) for c in want.tool_calls]
        assert (got.text, calls, got.finish_reason) == (want.text, want_calls, want.finish_reason)
        assert got.usage == want.usage
    forced = lookup.generate(*cases[0])
    assert [(c.name, c.arguments) for c in forced.tool_calls] == [("multiply", {"a": 6, "b": 7})]
    assert json.loads(lookup.generate(*cases[2]).text) == {"name": "Alice", "age": 30}
