"""``openvino-llm serve``: an OpenAI-compatible HTTP server over one shared engine (FastAPI + uvicorn).

Needs the ``serve`` extra: ``pip install "openvino-llm[serve]"``.
"""

from .app import create_app, run_server
from .limits import API_KEY_ENV, Limits

__all__ = ["API_KEY_ENV", "Limits", "create_app", "run_server"]
