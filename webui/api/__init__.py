"""The HTTP API: OpenAI-compatible routes under /v1."""
