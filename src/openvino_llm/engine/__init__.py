"""The generation engine: one batching scheduler per model, sync and async twins over it."""

from .engine import Engine, load_engine

__all__ = ["Engine", "load_engine"]
