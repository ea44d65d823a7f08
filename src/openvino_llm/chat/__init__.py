"""Chat rendering, tool prompts and tool-call parsing, JSON schemas for constrained decoding."""
