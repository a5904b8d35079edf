"""The Gradio UI. The only package that imports gradio; each tab is a thin layer over the services."""
from __future__ import annotations

import gradio as gr

from ..services import Services
from .model_tab import build_model_tab, status_text
from .notebook_tab import build_notebook_tab, token_count_text

TITLE = "Local LLM Web UI"

KEYBOARD_JS = """
() => {
  document.addEventListener('keydown', (e) => {
    const inNotebook = e.target && e.target.closest && e.target.closest('#notebook-text');
    if (inNotebook && e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      document.querySelector('#notebook-generate')?.click();
    } else if (e.key === 'Escape') {
      document.querySelector('#notebook-stop')?.click();
    }
  });
}
"""


def build_ui(services: Services) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"## {TITLE}")
        with gr.Tabs():
            with gr.Tab("Model", id="model"):
                model = build_model_tab(services)
            with gr.Tab("Notebook", id="notebook"):
                notebook = build_notebook_tab(services)
        # A page opened after a load (or after --model at start) shows the real state.
        demo.load(lambda t: (status_text(services), token_count_text(services, t)), notebook["text"],
                  [model["status"], notebook["tokens"]], queue=False)
    return demo
