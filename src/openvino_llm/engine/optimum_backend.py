"""The ``optimum`` backend: optimum-intel's ``OVModelForCausalLM`` with transformers' ``generate``.

For architectures openvino-genai cannot load. It speaks the same scheduler protocol as
:class:`~openvino_llm.engine.scheduler.BatchScheduler` (``submit`` -> events, ``Ticket.cancel``), so the
engine, stop strings, tool-call parsing, usage and timing are shared. Differences: requests run one
at a time on the worker thread (transformers' generate has no continuous batching), and constrained
decoding (structured output, forced tool calls) is not available.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openvino as ov
import openvino_genai as ov_genai

from ..errors import InvalidParameterError, OpenVINOLLMError
from .detokenize import IncrementalDecoder
from .scheduler import Deliver, EndEvent, ErrorEvent, TextEvent, WorkerThread, _Request, timing_from_clock

log = logging.getLogger("openvino_llm")


class _Ticket:
    def __init__(self, req: _Request) -> None:
        self.cancelled = threading.Event()
        self.req = req

    def cancel(self) -> None:
        self.cancelled.set()


class OptimumScheduler(WorkerThread["_Ticket | None"]):
    """Runs requests one after another on OVModelForCausalLM.generate in a worker thread."""

    def __init__(self, model: Any, tokenizer: ov_genai.Tokenizer, name: str) -> None:
        super().__init__(f"openvino-llm-optimum:{name}", None)
        self._model = model
        self._tokenizer = tokenizer
        self._busy = 0
        self._ids = 0
        self._thread.start()

    @property
    def active_requests(self) -> int:
        return self._busy

    def submit(self, input_ids: ov.Tensor, config: ov_genai.GenerationConfig, deliver: Deliver) -> _Ticket:
        if config.structured_output_config is not None:
            raise InvalidParameterError(
                "The optimum backend has no constrained decoding (structured output, required/named tool "
                "choice). Use backend='genai' (or 'auto') for those."
            )
        self._check_open()
        self._ids += 1
        ticket = _Ticket(_Request(self._ids, input_ids, config, deliver))
        self._inbox.put(ticket)
        return ticket

    def _run(self) -> None:
        while True:
            ticket = self._inbox.get()
            if ticket is None:
                return
            self._busy += 1
            try:
                self._generate(ticket)
            except Exception as e:
                ticket.req.deliver(ErrorEvent(OpenVINOLLMError(f"optimum-intel generation failed: {e}")))
            finally:
                self._busy -= 1

    def _generate(self, ticket: _Ticket) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        req, cfg = ticket.req, ticket.req.config
        req.t_submit = time.perf_counter()

        decoder = IncrementalDecoder(self._tokenizer)

        def on_text(text: str) -> None:
            if text:
                req.deliver(TextEvent(text))

        prompt_len = int(req.input_ids.shape[-1])

        class _Streamer(BaseStreamer):
            seen_prompt = False

            def put(self, value: Any) -> None:
                if not self.seen_prompt:  # generate() first hands over the prompt
                    self.seen_prompt = True
                    return
                ids = [int(x) for x in value.reshape(-1).tolist()]
                now = time.perf_counter()
                req.t_first = req.t_first or now
                req.t_last = now
                req.n_out += len(ids)
                on_text(decoder.write(ids))

            def end(self) -> None:
                on_text(decoder.end())

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), ticket.cancelled.is_set(), dtype=torch.bool)

        if ticket.cancelled.is_set():
            req.deliver(EndEvent("cancelled", prompt_len, 0, 0.0, 0.0, 0.0, 0.0))
            return
        ids = torch.tensor(req.input_ids.data, dtype=torch.long)
        kwargs: dict[str, Any] = {
            "max_new_tokens": cfg.max_new_tokens,
            "min_new_tokens": cfg.min_new_tokens or None,
            "do_sample": cfg.do_sample,
            "repetition_penalty": cfg.repetition_penalty,
            "eos_token_id": sorted({*cfg.stop_token_ids, cfg.eos_token_id} - {-1}) or None,
            "pad_token_id": cfg.eos_token_id if cfg.eos_token_id >= 0 else None,
        }
        if cfg.do_sample:
            kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=min(cfg.top_k, 2**31 - 1))
            if cfg.rng_seed:
                torch.manual_seed(cfg.rng_seed)
        self._model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            streamer=_Streamer(),
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
            **kwargs,
        )
        if ticket.cancelled.is_set():
            finish = "cancelled"
        else:
            finish = "length" if req.n_out >= cfg.max_new_tokens else "stop"
        ttft, tpot, tput, total = timing_from_clock(req, time.perf_counter())
        req.deliver(EndEvent(finish, prompt_len, req.n_out, ttft, tpot, tput, total))


def load_optimum_backend(
    path: Path, device: str, properties: Mapping[str, Any]
) -> tuple[OptimumScheduler, ov_genai.Tokenizer, ov_genai.GenerationConfig]:
    """Load an exported IR folder with optimum-intel; the tokenizer comes from openvino-tokenizers."""
    if not (path.is_dir() and (path / "config.json").exists()):
        raise InvalidParameterError(
            f"The optimum backend needs an exported OpenVINO IR folder with config.json; {path} is not one "
            "(GGUF files run on the genai backend only)."
        )
    try:
        from optimum.intel import OVModelForCausalLM
    except ImportError as e:
        raise OpenVINOLLMError(
            f"The optimum backend needs optimum-intel: pip install 'openvino-llm[export]' ({e})."
        ) from None
    try:
        model = OVModelForCausalLM.from_pretrained(str(path), device=device, ov_config=dict(properties), compile=True)
    except Exception as e:
        raise OpenVINOLLMError(f"optimum-intel could not load {path} on {device}: {e}") from e
    tokenizer = ov_genai.Tokenizer(str(path))
    gen_config_file = path / "generation_config.json"
    config = (
        ov_genai.GenerationConfig(str(gen_config_file)) if gen_config_file.exists() else ov_genai.GenerationConfig()
    )
    if config.eos_token_id < 0 and tokenizer.get_eos_token_id() >= 0:
        config.set_eos_token_id(tokenizer.get_eos_token_id())
    log.info("optimum backend: %s on %s (requests run one at a time)", path.name, device)
    return OptimumScheduler(model, tokenizer, path.name), tokenizer, config
