# ruff: noqa: E501  (chat templates keep their own lines)
"""Tiny models trained to speak one tool-call family each, for tests on real inference.

Per family: a byte-level BPE tokenizer trained with ``tokenizers`` with the family's special tokens
given to the trainer from the start (as special tokens where the real model's tokenizer marks them
special: Llama 3's ``<|python_tag|>``, Mistral's ``[TOOL_CALLS]``, Phi-4-mini's ``<|tool_call|>``;
Qwen3's ``<tool_call>`` and ``<think>`` are not special in Qwen's tokenizers, so they stay text
here), the family's chat template and end-of-turn tokens, and a 2-layer Llama trained with torch on
a handful of transcripts until greedy decoding reproduces them: weather questions for four cities
-> the family's native ``get_weather`` call, a multiplication -> ``multiply``, a greeting -> a
short text answer, a weather tool result -> a sentence about it; for Qwen3 a reasoning block
before each answer. The prompts are rendered by the core's own :class:`ChatRenderer` (through
openvino-genai's template engine), exactly as the engine renders them at test time.

    from tests.chat._trained import build_trained
    build_trained("mistral", Path("/tmp/mistral"))   # a Hugging Face folder; export with resolve_model
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests._tiny_model import corpus_lines
from tests.chat._families import LLAMA31, MISTRAL, PHI4_MINI, QWEN3, TOOLS

BUILDER_VERSION = "2"
SEED = 1234
VOCAB_SIZE = 2048

QWEN3_CODER = """\
{%- if tools %}<|im_start|>system
# Tools
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>
To call a function reply in the format:
<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
</function>
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{{ message.content }}
{%- for tool_call in message.tool_calls or [] %}
<tool_call>
<function={{ tool_call.function.name }}>
{% for name, value in tool_call.function.arguments.items() %}
<parameter={{ name }}>
{{ value if value is string else value | tojson }}
</parameter>
{% endfor %}
</function>
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

LLAMA32_PYTHONIC = """\
<|start_header_id|>system<|end_header_id|>

{%- if tools %}
You can call functions. Reply with [func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]
{%- for t in tools %}
{{ t | tojson }}
{%- endfor %}
{%- endif %}<|eot_id|>
{%- for message in messages %}
{%- if message.role in ['user', 'system'] %}<|start_header_id|>{{ message.role }}<|end_header_id|>

{{ message.content }}<|eot_id|>
{%- elif message.role == 'assistant' and message.tool_calls %}<|start_header_id|>assistant<|end_header_id|>

[
{%- for tc in message.tool_calls %}{{ tc.function.name }}(
{%- for name, value in tc.function.arguments.items() %}{{ name }}={{ value | tojson }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- if not loop.last %}, {% endif %}
{%- endfor %}]<|eot_id|>
{%- elif message.role == 'assistant' %}<|start_header_id|>assistant<|end_header_id|>

{{ message.content }}<|eot_id|>
{%- elif message.role == 'tool' or message.role == 'ipython' %}<|start_header_id|>ipython<|end_header_id|>

{{ message.content }}<|eot_id|>
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>

{% endif %}"""

CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
LLAMA3 = ("<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
          "<|eom_id|>", "<|python_tag|>")  # fmt: skip


@dataclass(frozen=True)
class Family:
    """How one family's tiny model is built: template, tokens, and what it writes."""

    name: str
    template: str
    #: special tokens (the first is unk/pad); given to the BPE trainer, so each is one token
    special: tuple[str, ...]
    #: the tokens that end a reply (the first is the tokenizer's eos)
    eos: tuple[str, ...]
    #: what the model writes for a call: ``call(name, arguments)`` -> text
    call: Any
    #: what ends a reply that is a call (default: ``eos[0]``)
    call_end: str = ""
    #: the model writes a <think> block before every answer (Qwen3)
    reasons: bool = False


def _json_call(name: str, args: dict[str, Any], key: str = "arguments") -> str:
    return json.dumps({"name": name, key: args})


def _pythonic(name: str, args: dict[str, Any]) -> str:
    return f"{name}(" + ", ".join(f"{k}={json.dumps(v)}" for k, v in args.items()) + ")"


def _coder(name: str, args: dict[str, Any]) -> str:
    params = "".join(
        f"<parameter={k}>\n{v if isinstance(v, str) else json.dumps(v)}\n</parameter>\n" for k, v in args.items()
    )
    return f"<tool_call>\n<function={name}>\n{params}</function>\n</tool_call>"


FAMILIES: dict[str, Family] = {
    "qwen3": Family(
        "qwen3",
        QWEN3,
        CHATML,
        ("<|im_end|>",),
        lambda n, a: f"<tool_call>\n{_json_call(n, a)}\n</tool_call>",
        reasons=True,
    ),
    "qwen3_coder": Family("qwen3_coder", QWEN3_CODER, CHATML, ("<|im_end|>",), _coder),
    "llama3_json": Family(
        "llama3_json",
        LLAMA31,
        LLAMA3,
        ("<|eot_id|>", "<|eom_id|>"),
        lambda n, a: "<|python_tag|>" + _json_call(n, a, "parameters"),
        call_end="<|eom_id|>",
    ),
    "llama3_pythonic": Family(
        "llama3_pythonic", LLAMA32_PYTHONIC, LLAMA3, ("<|eot_id|>", "<|eom_id|>"), lambda n, a: f"[{_pythonic(n, a)}]"
    ),
    "mistral": Family(
        "mistral",
        MISTRAL,
        (
            "<unk>",
            "<s>",
            "</s>",
            "[INST]",
            "[/INST]",
            "[TOOL_CALLS]",
            "[AVAILABLE_TOOLS]",
            "[/AVAILABLE_TOOLS]",
            "[TOOL_RESULTS]",
            "[/TOOL_RESULTS]",
        ),
        ("</s>",),
        lambda n, a: "[TOOL_CALLS]" + json.dumps([{"name": n, "arguments": a}]),
    ),
    "phi4_mini": Family(
        "phi4_mini",
        PHI4_MINI,
        (
            "<|endoftext|>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|end|>",
            "<|tool|>",
            "<|/tool|>",
            "<|tool_call|>",
            "<|/tool_call|>",
        ),
        ("<|end|>", "<|endoftext|>"),
        lambda n, a: "<|tool_call|>" + json.dumps([{"name": n, "arguments": a}]) + "<|/tool_call|>",
    ),
}

CITIES = ("Paris", "Rome", "Madrid", "Berlin")
GREETING = "Hello!"
GREETING_REPLY = "Hello! How can I help you today?"
WEATHER_RESULT = "Sunny, 22 C"
WEATHER_ANSWER = "It is sunny in Paris, 22 degrees."
MULTIPLY_QUESTION = "What is 6 times 7?"
CALL_ID = "abcDEF123"  # 9 alphanumeric characters: Mistral's templates take it


def cache_name(family: str) -> str:
    """The folder name of ``family``'s model in the test cache (builder version and template in the key)."""
    digest = hashlib.sha256(FAMILIES[family].template.encode()).hexdigest()[:8]
    return f"trained-{family}-v{BUILDER_VERSION}-{digest}"


def weather_question(city: str) -> str:
    return f"What is the weather in {city}?"


def reasoning_for(question: str) -> str:
    """What the Qwen3-style model thinks before answering ``question``."""
    if question == GREETING:
        return "The user greets me. I greet back."
    if question == MULTIPLY_QUESTION:
        return "I need to multiply 6 by 7 with the tool."
    if question.startswith("What is the weather in "):
        return f"The user wants the weather in {question[23:-1]}. I call get_weather."
    return "The tool answered. I tell the user."


def call_text(family: str, name: str, args: dict[str, Any]) -> str:
    """The native text of one call, as ``family``'s model writes it (special tokens included)."""
    return FAMILIES[family].call(name, args)


def transcripts(family: str) -> list[tuple[list[dict[str, Any]], str, str]]:
    """(messages, reply, end token) the model is trained on; the reply follows the generation prompt."""
    spec = FAMILIES[family]
    call_end = spec.call_end or spec.eos[0]
    turns: list[tuple[list[dict[str, Any]], str, str]] = []
    for city in CITIES:
        q = weather_question(city)
        turns.append(([{"role": "user", "content": q}], call_text(family, "get_weather", {"city": city}), call_end))
    turns.append(
        ([{"role": "user", "content": MULTIPLY_QUESTION}], call_text(family, "multiply", {"a": 6, "b": 7}), call_end)
    )
    turns.append(([{"role": "user", "content": GREETING}], GREETING_REPLY, spec.eos[0]))
    history = [
        {"role": "user", "content": weather_question("Paris")},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": CALL_ID, "name": "get_weather", "arguments": {"city": "Paris"}}],
        },
        {"role": "tool", "content": WEATHER_RESULT, "tool_call_id": CALL_ID, "name": "get_weather"},
    ]
    if spec.reasons:
        history[1]["reasoning_content"] = reasoning_for(weather_question("Paris"))
    turns.append((history, WEATHER_ANSWER, spec.eos[0]))
    if spec.reasons:
        turns = [(m, f"<think>\n{reasoning_for(m[-1]['content'] if m[-1]['role'] == 'user' else '')}\n</think>\n\n{r}", e)
                 for m, r, e in turns]  # fmt: skip
    return turns


# ---- building ------------------------------------------------------------------------------------


def build_tokenizer(spec: Family):  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(spec.special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = [*corpus_lines(), spec.template, *(json.dumps({"type": "function", "function": t}) for t in TOOLS)]
    for messages, reply, _ in transcripts(spec.name):
        texts += [m["content"] for m in messages] + [reply] * 4
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=spec.eos[0],
        unk_token=spec.special[0],
        pad_token=spec.special[0],
        additional_special_tokens=list(spec.special),
        chat_template=spec.template,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def _ov_tokenizer(hf_tokenizer, template: str, folder: Path):  # -> openvino_genai.Tokenizer
    import openvino as ov
    import openvino_genai as ov_genai
    from openvino_tokenizers import convert_tokenizer

    tokenizer, detokenizer = convert_tokenizer(hf_tokenizer, with_detokenizer=True)
    tokenizer.set_rt_info(template, "chat_template")
    ov.save_model(tokenizer, folder / "openvino_tokenizer.xml")
    ov.save_model(detokenizer, folder / "openvino_detokenizer.xml")
    return ov_genai.Tokenizer(str(folder))


def prompts_digest(family: str, ov_tokenizer) -> str:
    """A digest of the training prompts as the core renders them today with ``ov_tokenizer``.

    A cached model was trained on the prompts of its build; when the core renders them differently
    (a family's history rules changed), the digest changes and the model is trained again.
    """
    from openvino_llm.chat.render import ChatRenderer, normalize_messages

    renderer = ChatRenderer(ov_tokenizer)
    prompts = [renderer.render(normalize_messages(m), TOOLS) for m, _, _ in transcripts(family)]
    return hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]


def encode_transcripts(spec: Family, hf_tokenizer) -> tuple[list[tuple[list[int], int]], str]:
    """(token ids, length of the prompt) of every transcript, prompts rendered by the core's renderer,
    and the digest of the prompts."""
    from openvino_llm.chat.render import ChatRenderer, normalize_messages

    with tempfile.TemporaryDirectory() as tmp:
        ov_tok = _ov_tokenizer(hf_tokenizer, spec.template, Path(tmp))
        renderer = ChatRenderer(ov_tok)
        assert renderer.family.name == spec.name, (renderer.family.name, spec.name)
        out = []
        for messages, reply, end in transcripts(spec.name):
            prompt = renderer.render(normalize_messages(messages), TOOLS)
            p = [int(i) for i in ov_tok.encode(prompt, add_special_tokens=False).input_ids.data[0]]
            r = [int(i) for i in ov_tok.encode(reply, add_special_tokens=False).input_ids.data[0]]
            out.append(([*p, *r, hf_tokenizer.convert_tokens_to_ids(end)], len(p)))
        digest = prompts_digest(spec.name, ov_tok)
    return out, digest


def _batch(rows: list[tuple[list[int], int]], skip: int, pad: int):
    """Padded inputs, labels (replies only) and attention mask of ``rows`` without their first ``skip`` tokens."""
    import torch

    n = max(len(ids) for ids, _ in rows) - skip
    inputs = torch.full((len(rows), n), pad, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), skip + n), dtype=torch.long)
    for row, (ids, plen) in enumerate(rows):
        inputs[row, : len(ids) - skip] = torch.tensor(ids[skip:])
        labels[row, plen - skip : len(ids) - skip] = torch.tensor(ids[plen:])
        mask[row, : len(ids)] = 1
    return inputs, labels, mask


def _common_prefix(rows: list[tuple[list[int], int]]) -> int:
    first = rows[0][0]
    n = min(plen for _, plen in rows) - 1  # the last prompt token predicts the first reply token
    for ids, _ in rows[1:]:
        n = next((i for i in range(n) if ids[i] != first[i]), n)
    return n


def train(model, data: list[tuple[list[int], int]], pad: int, *, steps: int, lr: float = 2e-3) -> int:
    """Train on ``data`` (loss on the replies) until argmax reproduces every reply with a margin; steps taken.

    The transcripts that share the system prompt (the tools) compute it once per step (batch 1) and
    go on from its KV cache: three times fewer tokens than padding whole transcripts.
    """
    import torch
    from transformers import DynamicCache

    head = data[0][0][:8]
    shared = [d for d in data if d[0][:8] == head]
    rest = [d for d in data if d[0][:8] != head]
    skip = _common_prefix(shared)
    prefix = torch.tensor([shared[0][0][:skip]])
    batches = [_batch(shared, skip, pad)] + ([_batch(rest, 0, pad)] if rest else [])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for step in range(1, steps + 1):
        losses, checks = [], []
        for i, (inputs, labels, mask) in enumerate(batches):
            cache = None
            if i == 0 and skip:
                cache = DynamicCache(config=model.config)
                model(input_ids=prefix, past_key_values=cache, use_cache=True)
                cache.batch_repeat_interleave(inputs.shape[0])
            logits = model(
                input_ids=inputs, attention_mask=mask, past_key_values=cache, use_cache=cache is not None
            ).logits
            logits, target = logits[:, :-1], labels[:, 1:]
            sel = target != -100
            losses.append(torch.nn.functional.cross_entropy(logits[sel], target[sel], reduction="sum"))
            checks.append((logits[sel].detach(), target[sel]))
        total = sum(int((c[1]).numel()) for c in checks)
        loss = sum(losses) / total
        opt.zero_grad()
        loss.backward()
        opt.step()
        if all(_reproduced(lg, tg) for lg, tg in checks):
            model.eval()
            return step
    model.eval()
    return 0


def _reproduced(logits, target) -> bool:
    """Argmax is every reply token, with a margin over the runner-up (so f32 OpenVINO agrees)."""
    top2 = logits.topk(2, dim=-1)
    return bool((top2.indices[:, 0] == target).all()) and float((top2.values[:, 0] - top2.values[:, 1]).min()) > 3.0


def build_trained(family: str, out_dir: Path, *, steps: int = 1000) -> Path:
    """Write the trained checkpoint of ``family`` (safetensors, config, tokenizer) to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    spec = FAMILIES[family]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    tokenizer = build_tokenizer(spec)
    data, digest = encode_transcripts(spec, tokenizer)
    pad = tokenizer.convert_tokens_to_ids(spec.special[0])
    eos = [tokenizer.convert_tokens_to_ids(t) for t in spec.eos]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=pad,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    model = LlamaForCausalLM(config).to(torch.float32)
    taken = train(model, data, pad, steps=steps)
    if not taken:
        raise RuntimeError(f"the {family} model did not learn its transcripts in {steps} steps")
    model.generation_config = GenerationConfig(bos_token_id=pad, eos_token_id=eos, pad_token_id=pad)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = spec.template
    cfg_path.write_text(json.dumps(cfg, indent=2))
    stats = {"steps": taken, "seconds": round(time.monotonic() - t0, 1), "tokens": [len(i) for i, _ in data],
             "prompts": digest}  # fmt: skip
    (out_dir / "TRAINED_BUILDER_VERSION").write_text(BUILDER_VERSION + "\n" + json.dumps(stats))
    return out_dir


__all__ = [
    "BUILDER_VERSION",
    "FAMILIES",
    "build_trained",
    "cache_name",
    "call_text",
    "prompts_digest",
    "transcripts",
]
