"""The web page's routes: pages, the JSON API and the stored PDFs (see `adapters.web.guard` for
what every request passes first)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from adapters.web import pages
from adapters.web.adapter import WebCore, WebOptions
from adapters.web.guard import (
    CTX,
    PDF_CSP,
    Context,
    HttpProblem,
    folio_problem,
    guard,
    html_response,
    me,
    rate_limit,
    redirect,
    require_admin,
    security_headers,
    set_cookie,
    view_of,
)
from adapters.web.live import Event, LiveJobs
from adapters.web.security import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    RateLimiter,
    SessionSigner,
    clean_name,
    same_secret,
    secrets_mark,
    session_key,
)
from bot.jobs import Attachment, Job, JobKind

logger = logging.getLogger(__name__)

_THREAD = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def build_app(core: WebCore, options: WebOptions, live: LiveJobs) -> web.Application:
    key = session_key(options.secret, options.data_dir)
    ctx = Context(
        core=core,
        options=options,
        live=live,
        signer=SessionSigner(key, max_age_s=options.session_days * 86400),
        questions=RateLimiter(options.questions_per_minute),
        writes=RateLimiter(options.writes_per_minute),
        mark=secrets_mark(options.password, options.admin_token),
    )
    # The body limit of non-streamed requests; uploads are read part by part with their own cap.
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app[CTX] = ctx
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/login", login_page)
    r.add_post("/login", login_submit)
    r.add_post("/logout", logout)
    r.add_get("/static/{name}", static_file)
    r.add_get("/", chat_page)
    r.add_post("/ask", ask_form)
    r.add_get("/documents", documents_page)
    r.add_post("/documents", upload_form)
    r.add_post("/documents/forget", forget_form)
    r.add_get("/queue", queue_page)
    r.add_post("/queue/cancel", cancel_form)
    r.add_get("/history", history_page)
    r.add_get("/history/export", history_export)
    r.add_get("/files/{collection}/{name}", pdf_file)
    r.add_get("/api/session", api_session)
    r.add_post("/api/ask", api_ask)
    r.add_get("/api/docs", api_docs)
    r.add_post("/api/docs", api_upload)
    r.add_delete("/api/docs/{name}", api_forget)
    r.add_get("/api/queue", api_queue)
    r.add_post("/api/queue/{job}/cancel", api_cancel)
    r.add_get("/api/history", api_history)
    return app


async def _submit(request: web.Request, kind: JobKind, collection: str, *, text: str = "",
                  thread: str = "", attachment: Attachment | None = None) -> int:
    ctx = request.app[CTX]
    session = me(request)
    job = Job(
        kind=kind, platform=ctx.options.platform, collection=collection, channel="web",
        thread=f"{session.user}:{thread}" if thread else "",
        user=session.user, idempotency_key=secrets.token_hex(12), text=text,
        attachment=attachment, reply_to={"user": session.user},
    )
    try:
        accepted = await ctx.core.submit(job)
    except Exception as exc:
        raise folio_problem(exc) from exc
    return accepted.job_id


def _question(payload: dict[str, Any]) -> tuple[str, str]:
    question = str(payload.get("question") or "").strip()
    if not question:
        raise HttpProblem(400, "Type a question first.")
    if len(question) > 2000:
        raise HttpProblem(400, "That question is too long (at most 2000 characters).")
    thread = str(payload.get("conversation") or "")
    if thread and not _THREAD.match(thread):
        raise HttpProblem(400, "conversation must be letters, digits, - or _ (at most 40).")
    return question, thread


# ---- public -------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = pages.static(name)
    if found is None:
        raise HttpProblem(404, "No such file.")
    content_type, body = found
    response = web.Response(body=body, content_type=content_type)
    response.headers["Cache-Control"] = "max-age=300"
    return response


async def login_page(request: web.Request) -> web.Response:
    return html_response(pages.login_page(view_of(request)))


async def login_submit(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    rate_limit(ctx.writes, f"ip:{request.remote}", "sign-in attempts")
    form = await request.post()
    session = me(request)
    if ctx.options.password and not same_secret(str(form.get("password", "")),
                                                ctx.options.password):
        raise HttpProblem(403, "Wrong password.")
    token = str(form.get("admin_token", ""))
    admin = False
    if token:
        if not same_secret(token, ctx.options.admin_token):
            raise HttpProblem(403, "Wrong admin token.")
        admin = True
    name = clean_name(str(form.get("name", ""))) or f"guest-{secrets.token_hex(2)}"
    fresh = session.sign_in(name, admin=admin, mark=ctx.mark)
    response = redirect("/")
    set_cookie(ctx, request, response, fresh)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    response = redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


async def api_session(request: web.Request) -> web.Response:
    """For scripts: the CSRF token of the cookie session (keep the cookie jar)."""
    ctx = request.app[CTX]
    session = me(request)
    return web.json_response({"user": session.user, "name": session.name,
                              "admin": ctx.is_admin(session), "csrf": session.csrf,
                              "collections": list(ctx.options.collections)})


# ---- chat ---------------------------------------------------------------------------------


async def chat_page(request: web.Request) -> web.Response:
    return html_response(pages.chat_page(view_of(request)))


async def ask_form(request: web.Request) -> web.Response:
    """The chat form without JavaScript: waits for the answer and shows it."""
    ctx = request.app[CTX]
    form = await request.post()
    question, thread = _question({"question": form.get("question"),
                                  "conversation": form.get("conversation")})
    collection = ctx.collection(str(form.get("collection") or ""))
    rate_limit(ctx.questions, me(request).user, "questions")
    job_id = await _submit(request, JobKind.QUESTION, collection, text=question, thread=thread)
    final = await ctx.live.final(job_id, ctx.options.answer_timeout_s)
    return html_response(pages.chat_page(view_of(request), result=(question, final), conversation=thread))


async def api_ask(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    try:
        payload = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HttpProblem(400, 'Send JSON: {"question": "...", "collection": "..."}.') from exc
    if not isinstance(payload, dict):
        raise HttpProblem(400, 'Send a JSON object: {"question": "...", "collection": "..."}.')
    question, thread = _question(payload)
    collection = ctx.collection(payload.get("collection"))
    rate_limit(ctx.questions, me(request).user, "questions")
    job_id = await _submit(request, JobKind.QUESTION, collection, text=question, thread=thread)
    if request.query.get("stream") not in ("1", "true"):
        final = await ctx.live.final(job_id, ctx.options.answer_timeout_s)
        status = 200 if final.name == "answer" else 409
        body = final.data if final.name == "answer" else {"error": final.data.get("message", ""),
                                                          "job": job_id}
        return web.json_response(body, status=status)
    return await _stream(request, ctx.live.follow(job_id, ctx.options.answer_timeout_s))


async def _stream(request: web.Request, events: AsyncIterator[Event]) -> web.StreamResponse:
    """Server-sent events: `event: NAME` + `data: JSON` per event, until the final one."""
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",
    })
    security_headers(response, request)
    await response.prepare(request)
    try:
        async for event in events:
            data = json.dumps(event.data, ensure_ascii=False)
            await response.write(f"event: {event.name}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        # The tab closed: the job goes on and lands in the history.
        return response
    await response.write_eof()
    return response


# ---- documents ----------------------------------------------------------------------------


async def _documents(ctx: Context, collection: str) -> list[dict[str, Any]]:
    try:
        docs = await ctx.core.documents(collection)
    except Exception as exc:
        raise folio_problem(exc) from exc
    return [
        {"name": d.name, "pages": d.pages, "chunks": d.chunks, "sha256": d.sha256,
         "added_at": d.added_at, "pages_without_text": d.pages_without_text,
         "url": f"/files/{quote(collection, safe='')}/{quote(d.name, safe='')}"}
        for d in docs
    ]


async def documents_page(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    require_admin(request)
    collection = ctx.collection(request.query.get("collection"))
    docs = await _documents(ctx, collection)
    return html_response(pages.documents_page(view_of(request), collection, docs))


async def api_docs(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    collection = ctx.collection(request.query.get("collection"))
    return web.json_response(await _documents(ctx, collection))


async def _read_uploads(request: web.Request) -> tuple[str, list[dict[str, Any]], list[int]]:
    """Read a multipart upload part by part, queueing an ingest job per acceptable file as soon
    as it is read (so only one file is in memory).

    Returns (collection, outcomes refused here, ids of the queued jobs). A file over the size
    limit, not a PDF, or beyond the per-upload count gets a one-line reason and is not queued;
    the others still go in. The CSRF token (a header, or a field before the files) and the
    collection field must come before the first file.
    """
    ctx = request.app[CTX]
    session = me(request)
    limit = ctx.options.max_file_bytes
    if not request.content_type.startswith("multipart/"):
        raise HttpProblem(400, "Upload the PDFs as multipart/form-data (field name: files).")
    reader = await request.multipart()
    csrf_ok = request["bearer"] or same_secret(request.headers.get(CSRF_HEADER, ""), session.csrf)
    collection = ctx.options.collections[0]
    refused: list[dict[str, Any]] = []
    job_ids: list[int] = []
    files = 0
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise HttpProblem(400, "Nested multipart bodies are not accepted.")
        if part.filename is None:  # a form field
            value = (await part.read(decode=True))[:4096].decode("utf-8", "replace")
            if part.name == CSRF_FIELD:
                csrf_ok = csrf_ok or same_secret(value, session.csrf)
            elif part.name == "collection" and value:
                collection = ctx.collection(value)
            continue
        if not csrf_ok:
            raise HttpProblem(403, "The form expired or came from another site; reload the page.")
        if files == 0:
            rate_limit(ctx.writes, session.user, "uploads")
        files += 1
        name = part.filename
        data = bytearray()
        too_big = False
        while chunk := await part.read_chunk(256 * 1024):
            if too_big or len(data) + len(chunk) > limit:
                too_big = True
                data.clear()
                continue  # drain the rest of this part; keep nothing of it
            data.extend(chunk)
        reason = ""
        if files > ctx.options.max_files_per_upload:
            reason = f"more than {ctx.options.max_files_per_upload} files in one upload"
        elif too_big:
            reason = f"larger than the {limit / 1_000_000:g} MB limit"
        elif not name.lower().endswith(".pdf"):
            reason = "not a PDF (the name must end in .pdf)"
        elif not data:
            reason = "the file is empty"
        elif not bytes(data[:1024]).lstrip().startswith(b"%PDF-"):
            reason = "not a PDF (it does not start with %PDF-)"
        if reason:
            refused.append({"name": name, "status": "failed", "pages": 0, "chunks": 0,
                            "reason": reason})
            continue
        job_ids.append(await _submit(
            request, JobKind.INGEST, collection, attachment=Attachment(name, bytes(data))
        ))
    if not csrf_ok:
        raise HttpProblem(403, "The form expired or came from another site; reload the page.")
    if not files:
        raise HttpProblem(400, "Choose at least one PDF.")
    return collection, refused, job_ids


async def _upload_outcomes(request: web.Request) -> tuple[str, list[dict[str, Any]]]:
    ctx = request.app[CTX]
    require_admin(request)
    collection, refused, job_ids = await _read_uploads(request)
    finals = await asyncio.gather(
        *(ctx.live.final(i, ctx.options.answer_timeout_s) for i in job_ids)
    )
    outcomes = list(refused)
    for final in finals:
        if final.name == "ingest":
            outcomes.extend(final.data["files"])
        else:
            outcomes.append({"name": "?", "status": "failed", "pages": 0, "chunks": 0,
                             "reason": final.data.get("message", "")})
    return collection, outcomes


async def api_upload(request: web.Request) -> web.Response:
    collection, outcomes = await _upload_outcomes(request)
    return web.json_response({"collection": collection, "files": outcomes})


async def upload_form(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    collection, outcomes = await _upload_outcomes(request)
    docs = await _documents(ctx, collection)
    return html_response(pages.documents_page(view_of(request), collection, docs, outcomes=outcomes))


async def _forget(request: web.Request, name: str, collection: str) -> str:
    ctx = request.app[CTX]
    session = require_admin(request)
    rate_limit(ctx.writes, session.user, "changes")
    if not name.strip():
        raise HttpProblem(400, "Name the document to forget.")
    if name not in {d["name"] for d in await _documents(ctx, collection)}:
        raise HttpProblem(404, f"No document named {name!r} in {collection!r}.")
    job_id = await _submit(request, JobKind.FORGET, collection, text=name)
    final = await ctx.live.final(job_id, ctx.options.answer_timeout_s)
    if final.name != "notice":
        message = str(final.data.get("message", ""))
        raise HttpProblem(409, message)
    return str(final.data["text"])


async def api_forget(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    collection = ctx.collection(request.query.get("collection"))
    text = await _forget(request, request.match_info["name"], collection)
    return web.json_response({"ok": True, "message": text})


async def forget_form(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    form = await request.post()
    collection = ctx.collection(str(form.get("collection") or ""))
    text = await _forget(request, str(form.get("name", "")), collection)
    docs = await _documents(ctx, collection)
    return html_response(pages.documents_page(view_of(request), collection, docs, notice=text))


async def pdf_file(request: web.Request) -> web.StreamResponse:
    """A stored PDF, looked up by its document name in the store (never used as a path)."""
    ctx = request.app[CTX]
    collection = ctx.collection(request.match_info["collection"])
    name = request.match_info["name"]
    path = await ctx.core.original_file(collection, name)
    if path is None:
        raise HttpProblem(404, f"No stored PDF named {name!r} (ingest it again to keep it).")
    ascii_name = re.sub(r'[^A-Za-z0-9._ -]+', "_", name) or "document.pdf"
    response = web.FileResponse(path, headers={
        "Content-Type": "application/pdf",
        "Content-Disposition": f"inline; filename=\"{ascii_name}\"; "
                               f"filename*=UTF-8''{quote(name, safe='')}",
        "Content-Security-Policy": PDF_CSP,
        "Cache-Control": "private, max-age=300",
    })
    return response


# ---- queue --------------------------------------------------------------------------------


async def _queue(request: web.Request) -> list[dict[str, Any]]:
    ctx = request.app[CTX]
    session = me(request)
    admin = ctx.is_admin(session)
    try:
        entries = await ctx.core.active_jobs()
    except Exception as exc:
        raise folio_problem(exc) from exc
    rows = []
    for job, position, eta in entries:
        mine = job.platform == ctx.options.platform and job.user == session.user
        shown = mine or admin
        rows.append({
            "job": job.id, "kind": job.kind.value, "status": job.status.value,
            "position": position, "eta_s": round(eta, 1),
            "mine": mine,
            "who": "you" if mine else (f"{job.platform}:{job.user}" if admin else "someone"),
            "text": (job.text if job.kind is not JobKind.INGEST else
                     (job.attachment.filename if job.attachment else "a PDF")) if shown else "",
            "can_cancel": (mine or admin) and job.kind is JobKind.QUESTION,
        })
    return rows


async def queue_page(request: web.Request) -> web.Response:
    return html_response(pages.queue_page(view_of(request), await _queue(request)))


async def api_queue(request: web.Request) -> web.Response:
    return web.json_response(await _queue(request))


async def _cancel(request: web.Request, job_id: int) -> str:
    ctx = request.app[CTX]
    session = me(request)
    rate_limit(ctx.writes, session.user, "changes")
    try:
        job = await ctx.core.cancel(
            ctx.options.platform, session.user, job_id, as_admin=ctx.is_admin(session)
        )
    except Exception as exc:
        raise folio_problem(exc) from exc
    return f"Cancelling job {job.id}."


async def api_cancel(request: web.Request) -> web.Response:
    raw = request.match_info["job"]
    if not raw.isdigit():
        raise HttpProblem(400, "The job is a number.")
    return web.json_response({"ok": True, "message": await _cancel(request, int(raw))})


async def cancel_form(request: web.Request) -> web.Response:
    form = await request.post()
    raw = str(form.get("job", ""))
    if not raw.isdigit():
        raise HttpProblem(400, "The job is a number.")
    text = await _cancel(request, int(raw))
    return html_response(pages.queue_page(view_of(request), await _queue(request), notice=text))


# ---- history ------------------------------------------------------------------------------


async def _history(request: web.Request, everyone: bool) -> list[dict[str, Any]]:
    ctx = request.app[CTX]
    session = me(request)
    limit = ctx.options.history_limit
    if everyone:
        if not ctx.is_admin(session):
            raise HttpProblem(403, "Only admins see everyone's history.")
        rows = await ctx.core.all_history(limit=limit)
        return [
            {"job": r["job_id"], "who": f"{r['platform']}:{r['user_id']}",
             "collection": r["collection"], "status": r["status"], "question": r["question"],
             "answer": r["answer"], "citations": [], "asked_at": r["asked_at"]}
            for r in rows
        ]
    entries = await ctx.core.history(ctx.options.platform, session.user, limit=limit)
    return [
        {"job": e.job_id, "who": "you", "collection": e.collection, "status": e.status,
         "kind": e.kind, "question": e.question, "answer": e.answer or e.error,
         "citations": [
             {**c, "url": f"/files/{quote(e.collection, safe='')}/"
                          f"{quote(str(c['document']), safe='')}#page={c['page']}"}
             for c in e.citations
         ],
         "asked_at": e.asked_at}
        for e in entries
    ]


async def history_page(request: web.Request) -> web.Response:
    everyone = request.query.get("all") == "1"
    return html_response(pages.history_page(view_of(request), await _history(request, everyone),
                                    everyone=everyone))


async def api_history(request: web.Request) -> web.Response:
    return web.json_response(await _history(request, request.query.get("all") == "1"))


async def history_export(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    if not ctx.is_admin(me(request)):
        raise HttpProblem(403, "Only admins may export the history.")
    out = io.StringIO()
    await ctx.core.export_history(out)
    return web.Response(
        text=out.getvalue(), content_type="application/x-ndjson", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="folio-history.jsonl"'},
    )
