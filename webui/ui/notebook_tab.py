"""Notebook tab: free-form text. The whole box is the prompt; the model's text is appended to it."""
from __future__ import annotations

import threading
from typing import Any

import gradio as gr

from ..generation import GenerationJob
from ..params import SamplingParams
from ..services import Services
from .common import field_component, ui_errors

#: The minimal parameter set shown here; the Parameters tab will own the full list.
NOTEBOOK_PARAMS = ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "do_sample")


class SessionJobs:
    """The running job of each browser session, so Stop cancels that session's job only."""

    def __init__(self) -> None:
        self._jobs: dict[str, GenerationJob] = {}
        self._lock = threading.Lock()

    def start(self, session: str, job: GenerationJob) -> None:
        with self._lock:
            self._jobs[session] = job

    def stop(self, session: str) -> bool:
        with self._lock:
            job = self._jobs.get(session)
        if job is None or job.finished:
            return False
        job.cancel.set()
        return True

    def end(self, session: str, job: GenerationJob) -> None:
        with self._lock:
            if self._jobs.get(session) is job:
                del self._jobs[session]


def token_count_text(services: Services, text: str) -> str:
    current = services.models.current
    if current is None:
        return "Tokens: - (no model loaded)"
    try:
        n = len(current.backend.tokenize(text or ""))
    except Exception:  # the model is being swapped; the count is a hint, not worth an error
        return "Tokens: -"
    return f"Tokens: {n} / {current.backend.n_ctx} context"


def build_notebook_tab(services: Services) -> dict[str, Any]:
    jobs = SessionJobs()
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(lines=22, max_lines=60, label="Notebook", elem_id="notebook-text",
                              placeholder="Write the beginning of a text and press Generate (Ctrl+Enter). "
                                          "The model continues it.")
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id="notebook-generate")
                stop = gr.Button("Stop", variant="stop", elem_id="notebook-stop")
                cont = gr.Button("Continue", elem_id="notebook-continue")
                undo = gr.Button("Undo", elem_id="notebook-undo")
            with gr.Row():
                tokens = gr.Markdown("Tokens: -", elem_id="notebook-tokens")
                stats = gr.Markdown("", elem_id="notebook-stats")
        with gr.Column(scale=1):
            with gr.Accordion("Generation parameters", open=True):
                param_components = [field_component(SamplingParams, name, elem_prefix="nb-") for name in NOTEBOOK_PARAMS]
    before = gr.State("")  # the text as it was before the last generation, for Undo

    @ui_errors
    def run(request: gr.Request, current_text: str, *values: Any) -> Any:
        session = request.session_hash or "anonymous"
        params = SamplingParams.model_validate(
            {k: (int(v) if SamplingParams.model_fields[k].annotation is int else v)
             for k, v in zip(NOTEBOOK_PARAMS, values)})
        prompt = current_text or ""
        job = services.generator.submit(prompt, params)
        jobs.start(session, job)
        waiting = services.generator.waiting()
        out = prompt
        yield out, (f"Waiting for {waiting} other request(s)..." if waiting else "Generating..."), prompt
        try:
            for chunk in job:
                if chunk.text:
                    out += chunk.text
                    yield out, "Generating...", prompt
        finally:
            jobs.end(session, job)
        summary = job.stats.summary() if job.stats else ""
        yield out, summary, prompt

    def on_stop(request: gr.Request) -> None:
        jobs.stop(request.session_hash or "anonymous")

    inputs = [text, *param_components]
    for btn in (generate, cont):
        btn.click(run, inputs, [text, stats, before], concurrency_limit=None, show_progress="hidden").then(
            lambda t: token_count_text(services, t), text, tokens, queue=False, show_progress="hidden")
    text.submit(run, inputs, [text, stats, before], concurrency_limit=None, show_progress="hidden")
    stop.click(on_stop, None, None, queue=False)
    undo.click(lambda prev, cur: (prev or cur, ""), [before, text], [text, before], queue=False)
    text.input(lambda t: token_count_text(services, t), text, tokens, queue=False, show_progress="hidden",
               trigger_mode="always_last")
    # Ctrl+Enter generates, Escape stops (keyboard-first, as in text editors).
    return {"text": text, "generate": generate, "stop": stop, "tokens": tokens}
