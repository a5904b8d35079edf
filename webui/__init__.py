"""Local LLM web UI: load a model on your own machine, chat and write with it."""

__version__ = "0.1.0"
