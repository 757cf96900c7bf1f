"""Server-rendered HTML for the web page. Every value from a document, a user or the model goes
through `esc` (documents are untrusted); the only script is /static/app.js (the CSP allows no
inline script), which streams answers and shows upload progress."""

from __future__ import annotations

import functools
import html
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from adapters.web.live import Event
from adapters.web.security import CSRF_FIELD, Session


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class View:
    """Who is looking, and what the page may offer them."""

    session: Session
    admin: bool
    collections: Sequence[str]
    needs_password: bool = False
    admin_token: bool = False


@functools.cache
def static(name: str) -> tuple[str, bytes] | None:
    """(content type, bytes) of a file shipped in adapters/web/static, or None."""
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    suffix = name[name.rfind("."):] if "." in name else ""
    if suffix not in types or "/" in name or name.startswith("."):
        return None
    try:
        data = resources.files("adapters.web").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return types[suffix], data


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def _csrf(view: View) -> str:
    return f'<input type="hidden" name="{CSRF_FIELD}" value="{esc(view.session.csrf)}">'


def _layout(view: View | None, title: str, body: str, *, active: str = "") -> str:
    nav = ""
    if view is not None and view.session.signed_in:
        links = [("/", "Chat", "chat")]
        if view.admin:
            links.append(("/documents", "Documents", "documents"))
        links += [("/queue", "Queue", "queue"), ("/history", "History", "history")]
        items = "".join(
            f'<a href="{href}"{" class=active" if key == active else ""}>{label}</a>'
            for href, label, key in links
        )
        role = " (admin)" if view.admin else ""
        nav = (
            f'<nav>{items}<span class="me">{esc(view.session.name)}{role} · '
            f'<a href="/login">change</a> '
            f'<form method="post" action="/logout" class="inline">{_csrf(view)}'
            f'<button class="link">sign out</button></form></span></nav>'
        )
    csrf = esc(view.session.csrf) if view is not None else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{csrf}">'
        f"<title>{esc(title)} · Folio</title>"
        '<link rel="stylesheet" href="/static/style.css">'
        '<script src="/static/app.js" defer></script></head>'
        f'<body><header><h1>Folio</h1>{nav}</header><main>{body}</main></body></html>'
    )


def error_page(status: int, message: str, *, session: Session | None) -> str:
    view = View(session=session, admin=False, collections=()) if session is not None else None
    body = f'<p class="error" role="alert">{esc(message)}</p><p><a href="/">Back</a></p>'
    return _layout(view, f"Error {status}", body)


def login_page(view: View) -> str:
    password = (
        '<label>Password <input type="password" name="password" required '
        'autocomplete="current-password"></label>' if view.needs_password else ""
    )
    admin = (
        '<label>Admin token (optional) <input type="password" name="admin_token" '
        'autocomplete="off"></label>' if view.admin_token else ""
    )
    name = esc(view.session.name) if view.session.signed_in else ""
    body = (
        '<section class="card narrow"><h2>Sign in</h2>'
        '<form method="post" action="/login" id="login">'
        f"{_csrf(view)}"
        f'<label>Your name <input name="name" value="{name}" maxlength="40" '
        'placeholder="blank = a generated one"></label>'
        f"{password}{admin}<button>Continue</button></form></section>"
    )
    return _layout(view, "Sign in", body)


def _collection_select(view: View, selected: str = "") -> str:
    if len(view.collections) <= 1:
        value = esc(view.collections[0]) if view.collections else ""
        return f'<input type="hidden" name="collection" value="{value}">'
    options = "".join(
        f'<option{" selected" if c == selected else ""}>{esc(c)}</option>'
        for c in view.collections
    )
    return f'<label>Collection <select name="collection">{options}</select></label>'


def answer_html(data: dict[str, Any]) -> str:
    """The final answer block; app.js builds the same structure from the streamed event."""
    text = esc(data.get("answer", ""))
    note = f' <em>{esc(data["note"])}</em>' if data.get("note") else ""
    parts = [f'<div class="answer-text">{text}{note}</div>']
    if data.get("links"):
        items = "".join(
            f'<li><a class="cite" href="{esc(link["url"])}" target="_blank" rel="noopener">'
            f'{esc(link["document"])} p.{int(link["page"])}</a>'
            f'<q>{esc(link["quote"])}</q></li>'
            for link in data["links"]
        )
        parts.append(f'<ol class="citations">{items}</ol>')
    if data.get("closest"):
        items = "".join(
            f'<li><a class="cite" href="{esc(c["url"])}" target="_blank" rel="noopener">'
            f'{esc(c["document"])} p.{int(c["page"])}</a></li>'
            for c in data["closest"]
        )
        parts.append(f'<p class="closest-label">Closest pages:</p><ul class="closest">{items}</ul>')
    return "".join(parts)


def chat_page(
    view: View, *, result: tuple[str, Event] | None = None, conversation: str = ""
) -> str:
    turns = ""
    if result is not None:
        question, final = result
        shown = (answer_html(final.data) if final.name == "answer"
                 else f'<p class="error">{esc(final.data.get("message", ""))}</p>')
        turns = (f'<div class="turn"><p class="question">{esc(question)}</p>'
                 f'<div class="answer">{shown}</div></div>')
    body = (
        '<section class="chat"><div id="turns">' + turns + "</div>"
        '<form method="post" action="/ask" id="ask-form" class="ask">'
        f"{_csrf(view)}{_collection_select(view)}"
        f'<input type="hidden" name="conversation" id="conversation" value="{esc(conversation)}">'
        '<textarea name="question" id="question" rows="2" maxlength="2000" required '
        'placeholder="Ask a question about the documents…"></textarea>'
        '<div class="row"><button id="ask">Ask</button>'
        '<button type="button" id="new-conversation" class="secondary">New conversation</button>'
        "</div></form>"
        '<p class="hint">Follow-up questions in the same conversation see the earlier answers. '
        "Citations open the PDF at the cited page.</p></section>"
    )
    return _layout(view, "Chat", body, active="chat")


def _outcome_rows(outcomes: Sequence[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr class="{esc(o["status"])}"><td>{esc(o["name"])}</td><td>{esc(o["status"])}</td>'
        f'<td>{int(o["pages"])}</td><td>{int(o["chunks"])}</td><td>{esc(o["reason"])}</td></tr>'
        for o in outcomes
    )
    return (
        '<table class="outcomes"><thead><tr><th>file</th><th>result</th><th>pages</th>'
        f"<th>chunks</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def documents_page(
    view: View, collection: str, docs: Sequence[dict[str, Any]], *,
    outcomes: Sequence[dict[str, Any]] | None = None, notice: str = "",
) -> str:
    rows = "".join(
        f'<tr><td><a href="{esc(d["url"])}" target="_blank" rel="noopener">{esc(d["name"])}</a></td>'
        f'<td>{int(d["pages"])}</td><td>{int(d["chunks"])}</td>'
        f'<td>{int(d["pages_without_text"]) or ""}</td><td>{esc(d["added_at"])}</td>'
        f'<td><form method="post" action="/documents/forget" class="forget">{_csrf(view)}'
        f'<input type="hidden" name="collection" value="{esc(collection)}">'
        f'<input type="hidden" name="name" value="{esc(d["name"])}">'
        f'<button class="danger" data-name="{esc(d["name"])}">Forget</button></form></td></tr>'
        for d in docs
    ) or '<tr><td colspan=6 class="empty">Nothing indexed yet.</td></tr>'
    shown_outcomes = _outcome_rows(outcomes) if outcomes else ""
    body = (
        f"<h2>Documents in “{esc(collection)}”</h2>"
        + (f'<p class="notice" role="status">{esc(notice)}</p>' if notice else "")
        + '<table id="documents"><thead><tr><th>file</th><th>pages</th><th>chunks</th>'
        "<th>pages without text</th><th>added (UTC)</th><th></th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        '<section class="card"><h3>Add PDFs</h3>'
        '<form method="post" action="/documents" enctype="multipart/form-data" id="upload">'
        f"{_csrf(view)}{_collection_select(view, collection)}"
        '<input type="file" name="files" accept="application/pdf,.pdf" multiple required>'
        '<button>Upload</button></form>'
        '<progress id="upload-progress" max="100" value="0" hidden></progress>'
        f'<div id="upload-result">{shown_outcomes}</div></section>'
    )
    return _layout(view, "Documents", body, active="documents")


def queue_page(view: View, rows: Sequence[dict[str, Any]], *, notice: str = "") -> str:
    def cancel(row: dict[str, Any]) -> str:
        if not row["can_cancel"]:
            return ""
        return (f'<form method="post" action="/queue/cancel" class="cancel">{_csrf(view)}'
                f'<input type="hidden" name="job" value="{int(row["job"])}">'
                '<button class="danger">Cancel</button></form>')

    body_rows = "".join(
        f'<tr class="{esc(r["status"])}"><td>{"running" if r["position"] == 0 else int(r["position"])}'
        f'</td><td>{int(r["job"])}</td><td>{esc(r["kind"])}</td><td>{esc(r["who"])}</td>'
        f'<td>{esc(r["text"])}</td><td>{"now" if r["position"] == 0 else "~" + str(round(r["eta_s"])) + "s"}'
        f"</td><td>{cancel(r)}</td></tr>"
        for r in rows
    ) or '<tr><td colspan=7 class="empty">Nothing waiting.</td></tr>'
    body = (
        "<h2>Queue</h2>"
        + (f'<p class="notice" role="status">{esc(notice)}</p>' if notice else "")
        + '<table id="queue"><thead><tr><th>position</th><th>job</th><th>kind</th><th>who</th>'
        "<th>question / file</th><th>ETA</th><th></th></tr></thead>"
        f"<tbody>{body_rows}</tbody></table>"
        '<p class="hint">Jobs run one user at a time, least recently served first. '
        '<a href="/queue">Refresh</a></p>'
    )
    return _layout(view, "Queue", body, active="queue")


def history_page(view: View, rows: Sequence[dict[str, Any]], *, everyone: bool) -> str:
    def cites(row: dict[str, Any]) -> str:
        return " ".join(
            f'<a class="cite" href="{esc(c["url"])}" target="_blank" rel="noopener">'
            f'{esc(c["document"])} p.{int(c["page"])}</a>'
            for c in row["citations"]
        )

    items = "".join(
        f'<tr><td>{esc(_when(r["asked_at"]))}</td>'
        + (f'<td>{esc(r["who"])}</td>' if everyone else "")
        + f'<td>{esc(r["collection"])}</td><td class="q">{esc(r["question"])}</td>'
        f'<td class="a">{esc(r["answer"])}</td><td>{cites(r)}</td><td>{esc(r["status"])}</td></tr>'
        for r in rows
    ) or f'<tr><td colspan={7 if everyone else 6} class="empty">No questions yet.</td></tr>'
    tabs = ""
    if view.admin:
        tabs = (
            '<p class="tabs">'
            + ('<a href="/history">Mine</a> · <strong>Everyone</strong>' if everyone
               else '<strong>Mine</strong> · <a href="/history?all=1">Everyone</a>')
            + ' · <a href="/history/export">Export all (JSONL)</a></p>'
        )
    who = "<th>who</th>" if everyone else ""
    body = (
        f"<h2>{'Everyone’s' if everyone else 'Your'} questions</h2>{tabs}"
        f'<table id="history"><thead><tr><th>when</th>{who}<th>collection</th><th>question</th>'
        f"<th>answer</th><th>sources</th><th>status</th></tr></thead><tbody>{items}</tbody></table>"
    )
    return _layout(view, "History", body, active="history")
