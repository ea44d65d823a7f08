"""LangChain's standard chat model suites (langchain-tests) on the real-model tier: Qwen2.5-Coder-0.5B-Instruct.

Every capability flag a text-only model can honour is on: tool calling, tool choice, structured
output, JSON mode, usage metadata, Anthropic-style content blocks and the per-call model override,
which switches to the other embedded chat model (SmolLM2-135M-Instruct). The media flags (image,
PDF, audio, video inputs) stay off: the model reads text only, and ChatOpenVINO rejects media blocks
with InvalidParameterError. The SmolLM2 run of the same suites is tests/langchain/test_chat_models_standard.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests
from tests.real._model import real_model

from langchain_openvino import ChatOpenVINO
from openvino_llm.errors import OutputTruncatedError

pytestmark = [pytest.mark.slow, pytest.mark.real_model]

MODEL = real_model()  # the suites read their model from class properties, not from fixtures
# The other embedded chat model, for the model-override tests, by its title: the suite checks that the
# name it passes appears in response_metadata["model_name"], which is the model's title.
OTHER_MODEL = "SmolLM2-135M-Instruct"


class _Capabilities:
    """What ChatOpenVINO supports, stated once for both suites."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenVINO

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": MODEL}

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
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return True

    @property
    def model_override_value(self) -> str:
        return OTHER_MODEL


class TestQwenUnit(_Capabilities, ChatModelUnitTests):
    """The unit suite with its full standard parameters (temperature, max_tokens, timeout, stop, max_retries)."""


class TestQwenIntegration(_Capabilities, ChatModelIntegrationTests):
    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # Not in chat_model_params: test_standard_params passes max_tokens itself. Room for the
        # suites' longest structured outputs (a joke with setup, punchline and rating).
        return {"max_tokens": 256}


STRUCTURED_LOOPS = pytest.mark.xfail(
    reason="model limit: greedy Qwen2.5-Coder-0.5B-Instruct repeats itself inside a free-text field (the joke's "
    "'setup', the unicode customer's 'description') until max_tokens (256), so the constrained JSON never "
    "closes (OutputTruncatedError)",
    raises=OutputTruncatedError,
)


XFAIL_STRUCTURED = ("test_structured_output", "test_structured_output_async", "test_structured_output_pydantic_2_v1",
                    "test_structured_output_optional_param", "test_unicode_tool_call_integration")  # fmt: skip
