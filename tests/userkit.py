"""Helpers of the several-users tests: a users file, logging in (in the browser as a person does, or
over HTTP from a chosen loopback address), and reading what the audit log recorded.

(Import from here in any test module; ``tests/`` is on the import path.)
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from browserkit import settle

#: The two people of the tests: Alice runs the server, Bob uses it.
ALICE = ("alice", "alice-Secret-1")
BOB = ("bob", "bob-Secret-2")


def write_users(path: Path, users: dict[str, tuple[str, str]], *, hashed: bool = True) -> Path:
    """A users file: ``{name: (password, role)}``, the passwords hashed as ``scripts/users.py`` does."""
    from webui.accounts.passwords import hash_password

    entries = {
        name: {"password": hash_password(password) if hashed else password, "role": role}
        for name, (password, role) in users.items()
    }
    path.write_text(yaml.safe_dump({"users": entries}, sort_keys=False), encoding="utf-8")
    return path


def lab_users(user_dir: Path) -> Path:
    """<user_dir>/users.yaml with Alice (admin) and Bob (user), hashed: the server finds it on its own."""
    return write_users(user_dir / "users.yaml", {ALICE[0]: (ALICE[1], "admin"), BOB[0]: (BOB[1], "user")})


def log_in_page(browser: Any, url: str, name: str, password: str) -> Any:
    """A page in a browser context of its own (its own cookies), logged in through Gradio's log-in
    form with the mouse and keyboard; returned once the app is up with the user's saved values."""
    context = browser.new_context(locale="en-US", viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/")
    page.get_by_role("heading", name="Login").wait_for()
    page.locator("input[data-testid=textbox]").click()
    page.keyboard.type(name)
    page.locator("input[type=password]").click()
    page.keyboard.type(password)
    page.get_by_role("button", name="Login").click()
    settle(page)  # the log-in page reloads into the app
    return page


def close_page(page: Any) -> None:
    page.context.close()


@dataclass
class Answer:
    """An HTTP answer: status, headers (names lower-case), body, and the cookies it set."""

    status: int
    headers: dict[str, str]
    body: bytes
    cookies: list[str] = field(default_factory=list)

    @property
    def cookie(self) -> str:
        """A ``Cookie:`` header value carrying the cookies this answer set."""
        return "; ".join(c.split(";")[0] for c in self.cookies)


def request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    cookie: str | None = None,
    source: str | None = None,
) -> Answer:
    """One HTTP request to the server at ``url``, sent from loopback address ``source`` (e.g.
    ``127.0.0.2``: every 127.x address is this machine, so the server sees another client)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=30, source_address=(source, 0) if source else None
    )
    try:
        conn.request(method, path, body=body, headers={**(headers or {}), **({"Cookie": cookie} if cookie else {})})
        r = conn.getresponse()
        return Answer(
            r.status,
            {k.lower(): v for k, v in r.getheaders()},
            r.read(),
            [v for k, v in r.getheaders() if k.lower() == "set-cookie"],
        )
    finally:
        conn.close()


def log_in(url: str, name: str, password: str, *, source: str | None = None) -> Answer:
    """POST Gradio's ``/login`` form as the log-in page does; 200 with cookies on success."""
    form = urllib.parse.urlencode({"username": name, "password": password}).encode()
    return request(
        url,
        "/login",
        method="POST",
        body=form,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        source=source,
    )


def endpoint(client: Any, elem_id: str, event: str = "click") -> str:
    """The Gradio API name of the handler the page runs on ``event`` of the component ``elem_id``
    (found in the app's config: the names Gradio makes up, like ``/on_unload_1``, follow the build order)."""
    config = client.config
    ids = {c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id}
    for dep in config["dependencies"]:
        if dep.get("backend_fn") and dep.get("api_name") and any(t[0] in ids and t[1] == event for t in dep["targets"]):
            return "/" + dep["api_name"]
    raise LookupError(f"no API handler for {event} of #{elem_id}")


def audit_entries(user_dir: Path) -> list[dict[str, Any]]:
    """Every entry of <user_dir>/logs/audit.jsonl (the rotated files' too), oldest first."""
    folder = user_dir / "logs"
    files = sorted(folder.glob("audit.jsonl.*"), key=lambda p: -int(p.suffix[1:])) + [folder / "audit.jsonl"]
    out = []
    for path in files:
        if path.is_file():
            out += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out
