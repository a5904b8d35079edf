"""Model tab panels that put models into the models folder: hub downloads and import from disk.

Both are the admin's (with log-in): the page shows them to admins only (the Model tab's page load), and
starting a download or an import goes through the services' admin checks, which refuse anyone else.
"""

from __future__ import annotations

import html
import time
from typing import Any

import gradio as gr

from webui.catalogue import in_language
from webui.downloads.hub import Choice, DownloadJob, Listing, duration, list_files, parse_source
from webui.errors import PermissionDeniedError, WebUIError
from webui.services import Services
from webui.ui.common import error_line, error_text, error_toast, on_pick, ui_errors
from webui.ui.i18n import page_language, t, tr
from webui.units import human_size

POLL_SECONDS = 0.5


def progress_html(job: DownloadJob | None, lang: str | None = None) -> str:
    if job is None:
        return ""
    lang = lang or page_language()
    p = job.progress
    if job.state == "running":
        eta = "" if p.eta is None else tr("download.eta", lang, time=duration(p.eta))
        text = tr(
            "download.running",
            lang,
            name=job.choice.target,
            done=human_size(p.done),
            total=human_size(p.total),
            percent=f"{p.fraction:.0%}",
            speed=human_size(p.speed),
            eta=eta,
        )
        return (
            f'<div id="download-progress"><progress value="{p.done}" max="{max(p.total, 1)}" '
            f'style="width:100%"></progress><div>{html.escape(text)}</div></div>'
        )
    icon = {"done": "✅", "cancelled": "⏹", "failed": "⚠"}[job.state]
    if job.state == "done":
        message = tr("download.done", lang, name=job.choice.target, size=human_size(job.choice.size))
    else:
        message = error_text(job.error, lang) if job.error is not None else job.message
    return f'<div id="download-result" data-state="{job.state}">{icon} {_md_bold(html.escape(message))}</div>'


def _md_bold(text: str) -> str:
    """Our messages mark names with **...**; show them bold in HTML."""
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def listing_markdown(listing: Listing, lang: str | None = None) -> str:
    lang = lang or page_language()
    lines = [
        tr("download.listing_head", lang, label=listing.source.label, n=len(listing.files)),
        "",
        f"| {tr('download.file', lang)} | {tr('download.size', lang)} |",
        "|---|---:|",
    ]
    lines += [f"| `{f.path}` | {human_size(f.size)} |" for f in listing.files[:200]]
    if len(listing.files) > 200:
        lines.append(f"| {tr('download.more', lang, n=len(listing.files) - 200)} | |")
    if listing.note:
        lines += ["", in_language(listing.note, lang)]
    return "\n".join(lines)


def projector_box(choice: Choice | None, lang: str | None = None) -> Any:
    """The "also download the vision projector" tick box: shown (and ticked) for a GGUF that has one."""
    if choice is None or choice.projector is None:
        return gr.update(visible=False, value=False)
    lang = lang or page_language()
    name = choice.projector.path.rsplit("/", 1)[-1]
    label = tr("download.with_projector", lang, name=name, size=human_size(choice.projector.size))
    return gr.update(visible=True, value=True, label=label)


def _chosen(listing: Listing | None, key: str | None) -> Choice | None:
    return None if listing is None else next((c for c in listing.choices if c.key == key), None)


def build_download_panel(services: Services, model_dd: gr.Dropdown) -> dict[str, Any]:
    """The two panels; ``admin_only``: what the Model tab shows to admins only."""
    downloads = services.downloads
    admin = services.is_admin  # with log-in the page is built as nobody's: hidden until an admin's page loads
    with gr.Accordion(t("download.panel"), open=False, elem_id="download-panel", visible=admin) as download_panel:
        gr.Markdown(t("download.intro"))
        with gr.Row():
            repo = gr.Textbox(
                label=t("download.repo"),
                placeholder="bartowski/SmolLM2-135M-Instruct-GGUF",
                elem_id="download-repo",
                scale=4,
            )
            token = gr.Textbox(
                label=t("download.token"),
                type="password",
                elem_id="download-token",
                scale=2,
                placeholder=t("download.token_placeholder"),
            )
        with gr.Row():
            allow_pickle = gr.Checkbox(False, label=t("download.allow_pickle"), elem_id="download-allow-pickle")
            list_btn = gr.Button(t("download.list"), elem_id="download-list")
        files_md = gr.Markdown("", elem_id="download-files")
        choice_dd = gr.Dropdown(
            choices=[], label=t("download.choice"), elem_id="download-choice", info=t("download.choice_info")
        )
        with_projector = gr.Checkbox(False, label="", visible=False, elem_id="download-mmproj")
        with gr.Row():
            start_btn = gr.Button(t("download.start"), variant="primary", elem_id="download-start")
            cancel_btn = gr.Button(t("download.cancel"), elem_id="download-cancel")
        status = gr.HTML("", elem_id="download-status")
        listing_state = gr.State(None)
        job_state = gr.State(None)

    with gr.Accordion(t("import.panel"), open=False, elem_id="import-panel", visible=admin) as import_panel:
        gr.Markdown(t("import.intro"))
        with gr.Row():
            import_path = gr.Textbox(label=t("import.path"), elem_id="import-path", scale=4)
            import_mode = gr.Radio(
                [(t("import.link"), "link"), (t("import.copy"), "copy")],
                value="link",
                label=t("import.how"),
                elem_id="import-mode",
                scale=1,
            )
            import_btn = gr.Button(t("import.start"), elem_id="import-start", scale=1)
        import_msg = gr.Markdown("", elem_id="import-message")

    @ui_errors
    def on_list(text: str, tok: str, pickle_ok: bool) -> list[Any]:
        lang = page_language()
        try:
            listing = list_files(parse_source(text), token=tok, allow_pickle=pickle_ok)
        except WebUIError as exc:
            # Said where the listing goes (a pop-up goes after 10 s), and an earlier repo's listing cleared:
            # left standing under this error, its Download would fetch from that repo.
            return [None, error_line(exc, lang), gr.update(choices=[], value=None), projector_box(None), ""]
        choices = [(in_language(c.label, lang), c.key) for c in listing.choices]
        only = listing.choices[0] if len(listing.choices) == 1 else None
        return [
            listing,
            listing_markdown(listing, lang),
            gr.update(choices=choices, value=only.key if only else None),
            projector_box(only, lang),
            "",
        ]

    @ui_errors
    def on_start(listing: Listing | None, key: str | None, tok: str, projector: bool) -> Any:
        services.check_admin("download models")  # first: whatever else the call lacks, this is the answer
        lang = page_language()
        if listing is None:
            raise error_toast(tr("download.list_first", lang))
        choice = _chosen(listing, key)
        if choice is None:
            raise error_toast(tr("download.pick_first", lang))
        choice = choice.with_projector(bool(projector))
        job = services.download_model(listing, choice, tok)  # the audit log names the repository and files
        yield job.id, progress_html(job, lang), gr.update()
        while job.state == "running":
            time.sleep(POLL_SECONDS)
            yield job.id, progress_html(job, lang), gr.update()
        names = services.models_for_user()
        selected = choice.target if job.state == "done" and choice.target in names else gr.update()
        yield job.id, progress_html(job, lang), gr.update(choices=names, value=selected)

    def on_cancel(job_id: str | None) -> Any:
        if not downloads.cancel(job_id):
            return gr.update()
        return gr.update()

    @ui_errors
    def on_import(path: str, mode: str) -> list[Any]:
        lang = page_language()
        try:
            # the typed text as it is (the manager strips it; an empty box gets its "type a path" error)
            name = services.import_model(path, mode or "link")
        except PermissionDeniedError:
            raise  # (a call of this admin's action by anyone else: an error, not a line under a hidden button)
        except WebUIError as exc:
            return [gr.update(), error_line(exc, lang)]  # (in place of an older "Imported" line)
        key = "import.done_link" if mode == "link" else "import.done_copy"
        return [gr.update(choices=services.models_for_user(), value=name), tr(key, lang, name=name)]

    listed = [listing_state, files_md, choice_dd, with_projector, status]
    list_btn.click(on_list, [repo, token, allow_pickle], listed)
    repo.submit(on_list, [repo, token, allow_pickle], listed)
    on_pick(
        choice_dd,
        lambda key, listing: projector_box(_chosen(listing, key)),
        [choice_dd, listing_state],
        with_projector,
        queue=False,
        show_progress="hidden",
    )
    start_btn.click(
        on_start,
        [listing_state, choice_dd, token, with_projector],
        [job_state, status, model_dd],
        show_progress_on=status,
        concurrency_limit=4,
        concurrency_id="downloads",
    )
    cancel_btn.click(on_cancel, job_state, None, queue=False)
    import_btn.click(on_import, [import_path, import_mode], [model_dd, import_msg])
    return {"admin_only": [download_panel, import_panel]}
