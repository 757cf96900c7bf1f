"""A long-lived Folio process for the two-writer tests: it holds one engine, and so one copy of
each vector index in memory, for its whole life, as `folio run` does, and obeys JSON commands on
stdin, one a line, answering each with one JSON line on stdout:

    {"ingest": "/path/x.pdf"}  → {"outcomes": [[name, status, reason]]}
    {"retrieve": "question"}   → {"passages": [[document, page, keyword_rank or null]]}

Usage: python engine_process.py DATA_DIR COLLECTION
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(data_dir: str, collection: str) -> int:
    from bot.app import load_settings
    from rag.factory import build_engine

    engine = build_engine(load_settings(data_dir=Path(data_dir)))
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if "ingest" in command:
                report = engine.ingest_paths([Path(command["ingest"])], collection=collection)
                reply: dict[str, object] = {
                    "outcomes": [[o.name, o.status, o.reason] for o in report.outcomes]
                }
            else:
                passages = engine.retrieve(command["retrieve"], collection=collection)
                reply = {"passages": [[p.document, p.page, p.keyword_rank] for p in passages]}
            print(json.dumps(reply), flush=True)
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
