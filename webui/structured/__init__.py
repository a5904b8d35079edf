"""Structured output: checking JSON schemas and turning them into grammars that constrain generation.

Pure functions on plain data (no model, no loader): used by the API (tool calls, ``response_format``),
the Parameters tab's "JSON schema" box and the loaders that apply a grammar.
"""
