"""What ``openvino-llm export`` writes is a folder OpenVINO Model Server serves as it is.

``ovms --model_path DIR --task text_generation`` needs the model IR, the tokenizer and detokenizer IRs
(OpenVINO GenAI's format), a chat template (OVMS reads the one in the tokenizer IR's rt_info, or
``chat_template.jinja``) and the model's config and generation config. OVMS cannot be installed here;
openvino-genai, which OVMS runs underneath, loads the folder the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import openvino as ov
import openvino_genai as ov_genai
import pytest

from openvino_llm.cli import main

OVMS_FILES = (
    "openvino_model.xml",
    "openvino_model.bin",
    "openvino_tokenizer.xml",
    "openvino_tokenizer.bin",
    "openvino_detokenizer.xml",
    "openvino_detokenizer.bin",
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
)


@pytest.mark.slow
def test_export_has_every_file_ovms_needs(tiny_hf_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    out = tmp_path / "served"
    assert main(["export", str(tiny_hf_dir), str(out), "-q"]) == 0
    missing = [name for name in OVMS_FILES if not (out / name).is_file()]
    assert missing == []
    template = (out / "chat_template.jinja").read_text()
    assert "im_start" in template
    rt_info = ov.Core().read_model(out / "openvino_tokenizer.xml").get_rt_info()
    assert rt_info["chat_template"].astype(str) == template  # what OVMS applies to /v3/chat/completions
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == json.loads((out / "config.json").read_text())["eos_token_id"]
    pipe = ov_genai.LLMPipeline(str(out), "CPU")  # what OVMS's text_generation task builds on
    assert pipe.get_tokenizer().chat_template == template
    assert pipe.generate("hello", max_new_tokens=3, apply_chat_template=True) is not None
