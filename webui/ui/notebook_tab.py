"""Notebook tab: free-form text. The whole box is the prompt; the model's text is appended to it."""

from __future__ import annotations

import functools
import time
from typing import Any

import gradio as gr

from webui.errors import NoModelLoadedError
from webui.generation.scheduler import GenerationStats
from webui.probabilities import ViewedGeneration, generate_with_views
from webui.services import Services
from webui.ui.common import Frames, save_note, save_note_box, save_or_warn, ui_errors
from webui.ui.i18n import page_language, t, tr
from webui.ui.parameters_tab import params_from_values
from webui.ui.probabilities_ui import NotebookProbabilities, ViewFrames


def token_count_text(services: Services, text: str, lang: str | None = None) -> str:
    lang = lang or page_language()
    current = services.models.current
    if current is None:
        return tr("notebook.tokens_no_model", lang)
    try:
        n = len(current.backend.tokenize(text or ""))
    except Exception:  # the model is being swapped; the count is a hint, not worth an error
        return tr("notebook.tokens_none", lang)
    key = "notebook.tokens_about" if current.backend.tokens_estimated else "notebook.tokens"
    return tr(key, lang, n=n, n_ctx=current.backend.n_ctx)


def stats_text(stats: GenerationStats | None, lang: str) -> str:
    """``GenerationStats.summary`` in the page's language."""
    if stats is None:
        return ""
    ttft = f"{stats.ttft_seconds:.2f} s" if stats.ttft_seconds is not None else "-"
    reason_key = f"notebook.reason_{stats.finish_reason}"
    reason = tr(reason_key, lang) if stats.finish_reason in ("stop", "length", "cancelled") else stats.finish_reason
    line = tr(
        "notebook.stats",
        lang,
        tokens=stats.completion_tokens,
        speed=f"{stats.tokens_per_second:.1f}" if stats.completion_tokens > 1 else "-",  # (one token: no speed)
        ttft=ttft,
        prompt=stats.prompt_tokens,
        reason=reason,
        seed=stats.seed,
    )
    if stats.prompt_cut:  # raw text longer than truncation_length lost its start: say so
        line += " ⚠ " + tr("notebook.prompt_cut", lang, n=stats.prompt_cut)
    return line


def build_notebook_tab(services: Services) -> dict[str, Any]:
    """Lay out the tab; call the returned ``wire(param_components)`` once the Parameters tab exists."""
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(
                lines=22,
                max_lines=60,
                label=t("notebook.text"),
                elem_id="notebook-text",
                placeholder=t("notebook.placeholder"),
            )
            save_failed = save_note_box("notebook-save-note")
            with gr.Row():
                generate = gr.Button(t("notebook.generate"), variant="primary", elem_id="notebook-generate")
                stop = gr.Button(t("common.stop"), variant="stop", elem_id="notebook-stop")
                cont = gr.Button(t("common.continue"), elem_id="notebook-continue")
                undo = gr.Button(t("notebook.undo"), elem_id="notebook-undo")
            with gr.Row():
                tokens = gr.Markdown(tr("notebook.tokens_none", page_language()), elem_id="notebook-tokens")
                stats = gr.Markdown("", elem_id="notebook-stats")
            probs = NotebookProbabilities(services)
            probs.build()
            gr.Markdown(t("notebook.params_hint"))
    before = gr.State("")  # the text as it was before the last generation, for Undo

    @ui_errors
    def run(request: gr.Request, current_text: str, show_probs: bool, *values: Any) -> Any:
        session = request.session_hash or "anonymous"
        lang = page_language(request)
        params = params_from_values(values)
        prompt = current_text or ""
        if services.models.current is None:
            # Checked again on the generation thread; here so that the status line does not say
            # "Generating..." or "Waiting..." for a job that can only fail.
            raise NoModelLoadedError()
        cancel = services.cancels.start(session)
        viewed: ViewedGeneration | None = None
        try:
            if show_probs:  # each token with what the samplers did (shown under the text)
                viewed = generate_with_views(services.generator, prompt, params, cancel)
                assert viewed.job is not None
                job = viewed.job
            else:
                job = services.generator.submit(prompt, params, cancel)
        except BaseException:
            services.cancels.end(session, cancel)
            raise
        # The requests that run before this one (the queue takes turns between users: not simply those
        # sent earlier); 0 or None: it runs already, or has finished.
        waiting = services.generator.ahead_of(job)
        out = prompt
        saving = save_or_warn(lambda: services.save_notebook(prompt), lang)  # after a failure: warn once, not every 2 s
        generating = tr("notebook.generating", lang)
        views = ViewFrames(viewed, lang)
        # The box is the model's while it writes (each frame sends the whole text, so a word typed meanwhile
        # was erased by the next one): locked until the end; an error and the follow-up step unlock it.
        locked = gr.update(value=out, interactive=False)
        yield locked, (tr("notebook.waiting", lang, n=waiting) if waiting else generating), prompt, *views.first()
        last_save = time.monotonic()
        frames = Frames(services.settings.ui_updates_per_second)
        unlock = (gr.update(interactive=True), gr.skip(), gr.skip(), *(gr.skip() for _ in probs.outputs))
        try:
            for chunk in viewed if viewed is not None else job:
                if chunk.text:
                    out += chunk.text
                    if saving and time.monotonic() - last_save > 2.0:  # keep what is written so far, cheaply
                        saving = save_or_warn(functools.partial(services.save_notebook, out), lang)
                        last_save = time.monotonic()
                    if frames.due():  # the whole text is sent after the loop in any case
                        yield out, generating, prompt, *views.step(time.monotonic())
        except Exception:
            yield unlock  # then the pop-up: after an error the follow-up step was seen leaving the box locked
            raise
        finally:
            services.cancels.end(session, cancel)
            save_or_warn(lambda: services.save_notebook(out), lang)  # the final text: worth a second warning
        yield out, stats_text(job.stats, lang), prompt, *views.last()

    def on_stop(request: gr.Request) -> None:
        services.cancels.stop(request.session_hash or "anonymous")

    def wire(param_components: list[Any]) -> None:
        inputs = [text, probs.show, *param_components]
        outputs = [text, stats, before, *probs.outputs]

        def after_run(t: str) -> tuple[str, Any]:
            """The token count of the text written, and the box open for typing again (after an error too)."""
            return token_count_text(services, t), gr.update(interactive=True)

        for btn in (generate, cont):
            btn.click(run, inputs, outputs, concurrency_limit=None, show_progress="hidden").then(
                after_run, text, [tokens, text], queue=False, show_progress="hidden"
            )
        # A click on a candidate in the view: the text up to that token plus the candidate, and on from there.
        probs.view.branch(probs.branch_text, probs.state, text, show_progress="hidden").success(
            run, inputs, outputs, concurrency_limit=None, show_progress="hidden"
        ).then(after_run, text, [tokens, text], queue=False, show_progress="hidden")

    stop.click(on_stop, None, None, queue=False)

    def on_undo(prev: str, cur: str) -> tuple[str, str, Any]:
        restored = prev or cur
        return restored, "", save_note(lambda: services.save_notebook(restored))

    undo.click(on_undo, [before, text], [text, before, save_failed], queue=False)

    def on_edit(t: str) -> tuple[str, Any]:
        note = save_note(lambda: services.save_notebook(t))
        return token_count_text(services, t), note

    for edited in (text.input, text.blur):
        edited(on_edit, text, [tokens, save_failed], queue=False, show_progress="hidden", trigger_mode="always_last")
    return {
        "text": text,
        "generate": generate,
        "stop": stop,
        "tokens": tokens,
        "wire": wire,
        "probs_note": probs.note,
        "probs_note_text": probs.note_text,
    }
