"""Build a tiny random-weight Llama checkpoint (Hugging Face folder) for fast tests.

2 layers, hidden size 64, 4 heads, a 512-token byte-level BPE tokenizer trained with the
``tokenizers`` library on a small built-in English corpus, ChatML special tokens and chat
template. Weights are random (``torch.manual_seed`` fixed), so the text it generates is
gibberish, but the same on every build. Bump :data:`BUILDER_VERSION` when the recipe changes:
it is part of the on-disk cache key.

    from tests._tiny_model import build_tiny_llama
    build_tiny_llama(Path("/tmp/tiny"))
"""

from __future__ import annotations

import json
from pathlib import Path

BUILDER_VERSION = "1"
VOCAB_SIZE = 512
SEED = 1234
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """\
The capital of France is Paris. The capital of Italy is Rome. The capital of Spain is Madrid.
Paris is a large city on the river Seine, and many people visit it every year.
What is the weather like today? It is sunny and warm, with a light wind from the west.
You are a helpful assistant. Answer the question as briefly and as clearly as you can.
Hello! How are you? I am fine, thank you. What can I do for you today?
The quick brown fox jumps over the lazy dog. A small cat sleeps in the sun near the door.
Please write a short story about a robot who learns to paint pictures of the sea.
Once upon a time there was a little house at the edge of a green forest.
The model reads the prompt, then it writes one token after another until it stops.
Numbers: one, two, three, four, five, six, seven, eight, nine, ten, 0 1 2 3 4 5 6 7 8 9.
Tools can be called with arguments in JSON: {"name": "multiply", "arguments": {"a": 6, "b": 7}}.
The user asked for the time, and the assistant said that it could not know the time.
Water boils at one hundred degrees. Ice melts when the air is warmer than zero degrees.
Books, music and games are things that people enjoy in the evening after work.
This is a test of the tokenizer. It should learn common English words and pieces of words.
"""


def corpus_lines() -> list[str]:
    """The training corpus, repeated with small variations so common merges are learned."""
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    return [*lines, *(line.lower() for line in lines), *(line.upper() for line in lines[:5])]


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """Train the byte-level BPE tokenizer and wrap it for ``save_pretrained``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
        chat_template=CHATML_TEMPLATE,
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )


def build_tiny_llama(out_dir: Path) -> Path:
    """Write the tiny checkpoint (safetensors, config, generation config, tokenizer) to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    # Some tokenizer_config writers drop the template into a separate file; keep it inline as well.
    cfg_path = out_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.setdefault("chat_template", CHATML_TEMPLATE)
    cfg_path.write_text(json.dumps(cfg, indent=2))
    (out_dir / "TINY_MODEL_BUILDER_VERSION").write_text(BUILDER_VERSION)
    return out_dir
