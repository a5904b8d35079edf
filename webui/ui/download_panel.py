"""Model tab panels that put models into the models folder: hub downloads and import from disk."""
from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from ..download import DownloadJob, Listing, human_size, list_files, parse_source
from ..services import Services
from .common import ui_errors

POLL_SECONDS = 0.5


def progress_html(job: DownloadJob | None) -> str:
    if job is None:
        return ""
    p = job.progress
    if job.state == "running":
        return (f'<div id="download-progress"><progress value="{p.done}" max="{max(p.total, 1)}" '
                f'style="width:100%"></progress><div>{html.escape(job.status_text())}</div></div>')
    icon = {"done": "✅", "cancelled": "⏹", "failed": "⚠"}[job.state]
    return f'<div id="download-result" data-state="{job.state}">{icon} {_md_bold(html.escape(job.message))}</div>'


def _md_bold(text: str) -> str:
    """Our messages mark names with **...**; show them bold in HTML."""
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def listing_markdown(listing: Listing) -> str:
    lines = [f"**{listing.source.label}**: {len(listing.files)} files", "", "| File | Size |", "|---|---:|"]
    lines += [f"| `{f.path}` | {human_size(f.size)} |" for f in listing.files[:200]]
    if len(listing.files) > 200:
        lines.append(f"| … {len(listing.files) - 200} more | |")
    if listing.note:
        lines += ["", listing.note]
    return "\n".join(lines)


def build_download_panel(services: Services, model_dd: gr.Dropdown) -> None:
    downloads = services.downloads
    models = services.models
    with gr.Accordion("Download from Hugging Face", open=False, elem_id="download-panel"):
        gr.Markdown("Paste `USER/REPO`, `USER/REPO:branch`, a hub link or a direct link to a file. "
                    "For a GGUF repository pick one quantisation; for a transformers repository the safetensors "
                    "weights, config and tokenizer are fetched. `HF_ENDPOINT` (a mirror) and `HF_TOKEN` are used "
                    "when set.")
        with gr.Row():
            repo = gr.Textbox(label="Repository or URL", placeholder="bartowski/SmolLM2-135M-Instruct-GGUF",
                              elem_id="download-repo", scale=4)
            token = gr.Textbox(label="Token (gated repos)", type="password", elem_id="download-token", scale=2,
                               placeholder="optional; $HF_TOKEN is used if empty")
        with gr.Row():
            allow_pickle = gr.Checkbox(False, label="Allow pickle .bin weights (can run code; trusted repos only)",
                                       elem_id="download-allow-pickle")
            list_btn = gr.Button("Get file list", elem_id="download-list")
        files_md = gr.Markdown("", elem_id="download-files")
        choice_dd = gr.Dropdown(choices=[], label="What to download", elem_id="download-choice",
                                info="Sorted by size, with the RAM each needs.")
        with gr.Row():
            start_btn = gr.Button("Download", variant="primary", elem_id="download-start")
            cancel_btn = gr.Button("Cancel download", elem_id="download-cancel")
        status = gr.HTML("", elem_id="download-status")
        listing_state = gr.State(None)
        job_state = gr.State(None)

    with gr.Accordion("Import a model from disk", open=False, elem_id="import-panel"):
        gr.Markdown("Use a `.gguf` file or a model folder that is already on this computer (for example one "
                    "downloaded by LM Studio or Ollama). A link uses no extra disk space; a copy survives the "
                    "original being moved.")
        with gr.Row():
            import_path = gr.Textbox(label="Path of the .gguf file or model folder", elem_id="import-path", scale=4)
            import_mode = gr.Radio(["link", "copy"], value="link", label="How", elem_id="import-mode", scale=1)
            import_btn = gr.Button("Import", elem_id="import-start", scale=1)
        import_msg = gr.Markdown("", elem_id="import-message")

    @ui_errors
    def on_list(text: str, tok: str, pickle_ok: bool) -> list[Any]:
        listing = list_files(parse_source(text), token=tok, allow_pickle=pickle_ok)
        choices = [(c.label, c.key) for c in listing.choices]
        return [listing, listing_markdown(listing),
                gr.update(choices=choices, value=choices[0][1] if len(choices) == 1 else None), ""]

    @ui_errors
    def on_start(listing: Listing | None, key: str | None, tok: str) -> Any:
        if listing is None:
            raise gr.Error("Press 'Get file list' first.")
        choice = next((c for c in listing.choices if c.key == key), None)
        if choice is None:
            raise gr.Error("Pick what to download first.")
        job = downloads.start(listing, choice, tok)
        yield job.id, progress_html(job), gr.update()
        while job.state == "running":
            time.sleep(POLL_SECONDS)
            yield job.id, progress_html(job), gr.update()
        names = models.list_models()
        selected = choice.target if job.state == "done" and choice.target in names else gr.update()
        yield job.id, progress_html(job), gr.update(choices=names, value=selected)

    def on_cancel(job_id: str | None) -> Any:
        if not downloads.cancel(job_id):
            return gr.update()
        return gr.update()

    @ui_errors
    def on_import(path: str, mode: str) -> list[Any]:
        name = models.import_model(path, mode or "link")
        return [gr.update(choices=models.list_models(), value=name),
                f"Imported **{name}** ({'linked' if mode == 'link' else 'copied'}). Pick it above and press Load."]

    list_btn.click(on_list, [repo, token, allow_pickle], [listing_state, files_md, choice_dd, status])
    repo.submit(on_list, [repo, token, allow_pickle], [listing_state, files_md, choice_dd, status])
    start_btn.click(on_start, [listing_state, choice_dd, token], [job_state, status, model_dd], concurrency_limit=4,
                    concurrency_id="downloads")
    cancel_btn.click(on_cancel, job_state, None, queue=False)
    import_btn.click(on_import, [import_path, import_mode], [model_dd, import_msg])
