"""``openvino-llm bench``: our paths and the peers, interleaved, reported as JSON, markdown and PNG."""
