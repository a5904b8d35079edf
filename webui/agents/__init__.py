"""What agents need from a chat model: tool calls by model family, reasoning split from the answer,
and the request engine that turns an OpenAI- or Anthropic-shaped chat request into a generation job
and its output back into messages, tool calls and events."""
