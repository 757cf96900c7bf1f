"""`folio docs` and `folio forget FILE`: what is indexed, and taking a document out."""

from __future__ import annotations

from bot.commands.output import open_engine, print_json
from config.settings import Settings


def cmd_docs(settings: Settings, collection: str, *, as_json: bool) -> int:
    from rag.store import DocumentStore

    store = DocumentStore(settings.documents_db)
    try:
        docs = store.documents(collection)
    finally:
        store.close()
    if as_json:
        print_json([
            {"name": d.name, "pages": d.pages, "chunks": d.chunks, "sha256": d.sha256,
             "added_at": d.added_at, "pages_without_text": d.pages_without_text}
            for d in docs
        ])
        return 0
    if not docs:
        print(f"No documents in collection {collection!r}. Add some with: folio ingest PATH")
        return 0
    width = max(len(d.name) for d in docs)
    print(f"{'file':<{width}}  {'pages':>5}  {'chunks':>6}  sha256        added (UTC)")
    for d in docs:
        print(f"{d.name:<{width}}  {d.pages:>5}  {d.chunks:>6}  {d.sha256[:12]}  "
              f"{d.added_at.replace('T', ' ')[:16]}")
    print(f"{len(docs)} document(s), {sum(d.pages for d in docs)} pages in {collection!r}.")
    return 0


def cmd_forget(settings: Settings, collection: str, name: str) -> int:
    engine = open_engine(settings)
    try:
        info = engine.forget(name, collection=collection)
    finally:
        engine.close()
    print(f"Forgot {info.name} ({info.pages} pages, {info.chunks} chunks).")
    return 0
