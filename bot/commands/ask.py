"""`folio ask QUESTION`: the answer streamed as it is written, then the checked one."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from bot.answer_json import answer_record
from bot.commands.output import open_engine, print_json
from bot.errors import FolioError
from config.settings import Settings


def cmd_ask(
    settings: Settings, collection: str, question: str, *, verbose: bool, as_json: bool,
    out: TextIO | None = None,
) -> int:
    from bot.render import render_answer
    from rag.types import AnswerProgress

    out = out or sys.stdout
    engine = open_engine(settings)
    if not engine.documents(collection):
        engine.close()
        raise FolioError(
            f"Nothing is indexed in collection {collection!r} yet: run `folio ingest PATH` first."
        )
    printed = [""]

    def progress(event: AnswerProgress) -> None:
        # Stream the answer as it is written (people only; JSON waits for the end). A draft that
        # revises the last one (the model's checked sentence now leads) starts a fresh line.
        text = event.partial_text
        if as_json or event.stage != "writing" or not text or text == printed[0]:
            return
        out.write(text[len(printed[0]):] if text.startswith(printed[0]) else f"\n{text}")
        out.flush()
        printed[0] = text

    started = time.perf_counter()
    try:
        answer = engine.answer(question, collection=collection, on_progress=progress)
    finally:
        engine.close()
    seconds = time.perf_counter() - started
    if as_json:
        print_json({"question": question, **answer_record(answer, seconds)}, out)
        return 0
    final = render_answer(answer)
    if printed[0] and printed[0] == answer.text and final.startswith(answer.text):
        final = final[len(answer.text):].lstrip("\n")  # the last draft was the answer
        out.write("\n\n")
    elif printed[0]:
        # What streamed were drafts; the final answer (with its sources) follows them.
        out.write("\n\n" + ("" if answer.abstained else "Answer:\n"))
    out.write(final + "\n")
    if answer.citations:
        for citation in answer.citations:
            out.write(f'  {citation.render()} "{citation.quote}"\n')
    if verbose:
        out.write("\nRetrieved passages:\n")
        for rank, passage in enumerate(answer.retrieved, start=1):
            out.write(
                f"  {rank}. [{passage.document} p.{passage.page}] fused={passage.score:.4f} "
                f"cosine={passage.dense_score:.3f} keyword_rank={passage.keyword_rank}\n"
                f"     {passage.text[:300]}\n"
            )
        t = answer.timings
        first = f"{t.first_token:.2f}s" if t.first_token is not None else "-"
        out.write(
            f"\nTimings: retrieval {t.retrieval * 1000:.0f} ms, first token {first}, "
            f"generation {t.generation:.2f}s, total {seconds:.2f}s; "
            f"{answer.prompt_tokens} prompt + {answer.tokens} answer tokens ({answer.model})\n"
        )
    return 0
