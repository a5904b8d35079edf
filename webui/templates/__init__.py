"""Chat templates (sandboxed Jinja, compiled once) and instruction templates."""
