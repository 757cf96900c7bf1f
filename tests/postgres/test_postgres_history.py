"""The shared conversation history against a real Postgres: what one node adds, another reads
(its user's questions only, a conversation's turns for follow-ups, the full export)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

from fakes import make_job

from bot.history import build_record
from bot.history_postgres import PostgresHistory
from bot.jobs import AnswerOutcome, JobStatus
from rag.postgres import PostgresDatabase, PostgresOptions
from rag.types import Answer, Citation


def answer(text: str) -> AnswerOutcome:
    citation = Citation("harbour.pdf", 2, "visibility of five hundred metres")
    return AnswerOutcome(Answer(text, [citation], [], abstained=False, model="m"))


async def test_what_one_node_adds_every_node_reads(postgres_url: str) -> None:
    nodes = [PostgresHistory(PostgresDatabase(PostgresOptions(url=postgres_url, pool_size=1)))
             for _ in range(2)]
    one, two = nodes
    try:
        ann = [replace(make_job("slack", "ann", f"question {i}", thread="t1"), id=10 + i)
               for i in range(3)]
        bob = replace(make_job("slack", "bob", "bob's question", thread="t1"), id=20)
        for job in ann:
            await one.add(build_record(job, JobStatus.DONE, answer(f"answer to {job.text}")))
        await two.add(build_record(bob, JobStatus.DONE, answer("bob's answer")))
        mine = await two.for_user("slack", "ann", limit=10)
        assert [e.question for e in mine] == ["question 2", "question 1", "question 0"]
        assert mine[0].citations[0]["page"] == 2
        assert [e.question for e in await one.for_user("slack", "bob")] == ["bob's question"]
        # A follow-up in the thread sees the thread's earlier turns (everyone's), oldest first.
        later = replace(make_job("slack", "ann", "and then?", thread="t1"), id=30)
        turns = await two.recent_turns(later, 2)
        assert [t.question for t in turns] == ["question 2", "bob's question"]
        assert [r["question"] for r in await one.recent(limit=2)] == [
            "bob's question", "question 2"]
        out = io.StringIO()
        assert await two.export_jsonl(out) == 4
        first = json.loads(out.getvalue().splitlines()[0])
        assert first["question"] == "question 0" and first["citations"][0]["document"] == (
            "harbour.pdf")
    finally:
        for node in nodes:
            node.close()
