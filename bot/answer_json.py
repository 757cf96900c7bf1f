"""The JSON shape of an answer, shared by `folio ask --json`, `folio eval` and the web API."""

from __future__ import annotations

from typing import Any


def answer_record(answer: Any, seconds: float) -> dict[str, Any]:
    """The JSON shape of an answer (shared by `ask --json` and `folio eval`)."""
    from bot.render import render_answer

    return {
        # What the user sees: for an abstention, the reply that names the closest pages.
        "answer": render_answer(answer) if answer.abstained else answer.text,
        "citations": [[c.document, c.page, c.quote] for c in answer.citations],
        "cited_from_images": [[c.document, c.page] for c in answer.citations if c.from_image],
        "retrieved": [[p.document, p.page] for p in answer.retrieved],
        # The shown passages' cosine similarity to the question (retrieval.min_dense_score's
        # scale), best first: with evidence_match, what a threshold is calibrated on.
        "similarities": [round(float(p.dense_score), 4) for p in answer.retrieved],
        "abstained": answer.abstained,
        "declined_because": answer.declined_because,
        "evidence_match": (None if answer.evidence_match is None
                           else round(answer.evidence_match, 4)),
        "shortened": answer.shortened,
        "seconds": round(seconds, 3),
        "ttft_seconds": (
            round(answer.timings.retrieval + answer.timings.first_token, 3)
            if answer.timings.first_token is not None
            else None
        ),
        "tokens": answer.tokens,
        "model": answer.model,
    }
