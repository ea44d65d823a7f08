"""Model families: how each one writes tool calls, found from the chat template.

One module per family (render rules, the trigger of guided calls, parsers of a whole output and of
a stream prefix). :func:`detect_family` picks the family from the chat template and the special
tokens; ``GenerationParams(tool_format=...)`` overrides it. Templates that do not render tools get
the Hermes format (:class:`HermesFamily`), which the tool prompt then teaches.

=================  ==========================================================  ==================
name               output                                                      models
=================  ==========================================================  ==================
hermes             ``<tool_call>{"name", "arguments"}</tool_call>``            Qwen2.5, Hermes, any
qwen3              same, plus ``<think>`` reasoning                            Qwen3, QwQ
qwen3_coder        ``<tool_call><function=f><parameter=p>v</parameter>...``    Qwen3-Coder
llama3_json        ``<|python_tag|>{"name", "parameters"}; ...``               Llama 3.1-3.3
llama3_pythonic    ``[f(a=1), g(b="x")]``                                      Llama 3.2 1B/3B, 4
mistral            ``[TOOL_CALLS][{"name", "arguments"}]`` / ``f[ARGS]{...}``  Mistral, Nemo, Small
phi4_mini          ``<|tool_call|>[{"name", "arguments"}]<|/tool_call|>``      Phi-4-mini
=================  ==========================================================  ==================
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import InvalidParameterError
from .base import PartialCall, ToolFamily, may_open_json_block, unfence
from .hermes import HermesFamily
from .llama3_json import Llama3JsonFamily
from .llama3_pythonic import Llama3PythonicFamily
from .mistral import MistralFamily
from .phi4_mini import Phi4MiniFamily
from .qwen3 import Qwen3CoderFamily, Qwen3Family

#: in detection order: the most specific template hints first
FAMILIES: tuple[type[ToolFamily], ...] = (
    Qwen3CoderFamily,
    MistralFamily,
    Phi4MiniFamily,
    Llama3PythonicFamily,
    Llama3JsonFamily,
    Qwen3Family,
    HermesFamily,
)
FAMILY_NAMES: tuple[str, ...] = tuple(f.name for f in FAMILIES)


def get_family(name: str) -> ToolFamily:
    """The family called ``name`` (see :data:`FAMILY_NAMES`)."""
    for family in FAMILIES:
        if family.name == name:
            return family()
    raise InvalidParameterError(f"tool_format={name!r} is unknown; use one of {list(FAMILY_NAMES)}.")


def detect_family(template: str, special_tokens: Sequence[str] = ()) -> ToolFamily:
    """The family of a chat template: the first whose hints it contains, else Hermes."""
    for family in FAMILIES:
        if family.matches(template, special_tokens):
            return family()
    return HermesFamily()


__all__ = [
    "FAMILIES",
    "FAMILY_NAMES",
    "HermesFamily",
    "Llama3JsonFamily",
    "Llama3PythonicFamily",
    "MistralFamily",
    "PartialCall",
    "Phi4MiniFamily",
    "Qwen3CoderFamily",
    "Qwen3Family",
    "ToolFamily",
    "detect_family",
    "get_family",
    "may_open_json_block",
    "unfence",
]
