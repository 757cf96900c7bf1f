"""`folio eval`: answer quality as numbers, through exactly the path a chat question takes.

Questions are JSONL in the format of the shared dev set: id, question, doc, pages (1-based gold
pages, [] if unanswerable), answer, must_include (key strings), kind. Matching of key strings is
case-insensitive on NFKC text with whitespace collapsed and thousands separators removed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bot.measure.stats import percentile
from config.settings import Settings
from rag.normalize import normalize_for_match
from rag.types import Turn


@dataclass
class Question:
    id: str
    question: str
    doc: str | None
    pages: list[int]
    must_include: list[str]
    kind: str
    history: list[Turn] = field(default_factory=list)  # earlier turns of the conversation

    @property
    def answerable(self) -> bool:
        return bool(self.pages)


@dataclass
class Scored:
    question: Question
    record: dict[str, Any]
    rank: int | None = None  # 1-based rank of the first gold page among the retrieved
    cited: int = 0
    cited_gold: int = 0
    facts_found: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def unfaithful(self) -> bool:
        """An answer with a sentence that the pages it cites do not support."""
        return bool(self.record.get("unsupported"))


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(
                Question(
                    id=str(item["id"]),
                    question=item["question"],
                    doc=item.get("doc"),
                    pages=[int(p) for p in item.get("pages") or []],
                    must_include=list(item.get("must_include") or []),
                    kind=item.get("kind") or ("unanswerable" if not item.get("pages") else "lookup"),
                    history=[Turn(str(t["question"]), str(t["answer"]))
                             for t in item.get("history") or []],
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SystemExit(f"folio eval: {path}:{number}: not a question record ({exc})") from None
    return questions


def score(question: Question, record: dict[str, Any]) -> Scored:
    scored = Scored(question, record)
    gold = {(question.doc, page) for page in question.pages}
    for rank, (document, page) in enumerate(record["retrieved"], start=1):
        if (document, page) in gold:
            scored.rank = rank
            break
    citations = {(c[0], c[1]) for c in record["citations"]}
    scored.cited = len(citations)
    scored.cited_gold = len(citations & gold)
    answer = "" if record["abstained"] else normalize_for_match(record["answer"])
    scored.facts_found = sum(1 for fact in question.must_include if normalize_for_match(fact) in answer)
    return scored


def _ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 3) if denominator else None


def summarize(results: Sequence[Scored], k: int) -> dict[str, Any]:
    answerable = [r for r in results if r.question.answerable]
    unanswerable = [r for r in results if not r.question.answerable]
    answered = [r for r in results if not r.record["abstained"]]
    cited = sum(r.cited for r in answerable)
    facts = sum(len(r.question.must_include) for r in answerable)
    seconds = [r.record["seconds"] for r in results]
    summary: dict[str, Any] = {
        "questions": len(results),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "k": k,
        "hit_at_k": _ratio(sum(1 for r in answerable if r.rank is not None and r.rank <= k), len(answerable)),
        "mrr": _ratio(sum(1 / r.rank for r in answerable if r.rank), len(answerable)),
        "citation_hit": _ratio(sum(1 for r in answerable if r.cited_gold), len(answerable)),
        "citation_precision": _ratio(sum(r.cited_gold for r in answerable), cited),
        "key_fact_recall": _ratio(sum(r.facts_found for r in answerable), facts),
        "abstention_unanswerable": _ratio(
            sum(1 for r in unanswerable if r.record["abstained"]), len(unanswerable)
        ),
        "false_abstention": _ratio(sum(1 for r in answerable if r.record["abstained"]), len(answerable)),
        "unsupported_answers": _ratio(
            sum(1 for r in answered if r.unfaithful), len(answered)
        ),
        "latency_p50_s": _round(percentile(seconds, 0.5)),
        "latency_p95_s": _round(percentile(seconds, 0.95)),
    }
    by_kind: dict[str, list[Scored]] = defaultdict(list)
    for r in answerable:
        by_kind[r.question.kind].append(r)
    summary["by_kind"] = {
        kind: {
            "questions": len(items),
            "hit_at_k": _ratio(sum(1 for r in items if r.rank is not None and r.rank <= k), len(items)),
            "citation_hit": _ratio(sum(1 for r in items if r.cited_gold), len(items)),
            "key_fact_recall": _ratio(
                sum(r.facts_found for r in items), sum(len(r.question.must_include) for r in items)
            ),
            "false_abstention": _ratio(sum(1 for r in items if r.record["abstained"]), len(items)),
            "citation_precision": _ratio(
                sum(r.cited_gold for r in items), sum(r.cited for r in items)
            ),
        }
        for kind, items in sorted(by_kind.items())
    }
    return summary


_LEADING_MARKS = re.compile(r"^((?:\s*\[[^\[\]]+? p\.\d+[^\]]*\])+)")


def unsupported_sentences(answer: Any, page_text: Any) -> list[str]:
    """The answer's sentences that the pages they cite do not strictly support (every content
    word and number there). A sentence carrying `[file p.N]` marks is checked against those
    pages; one without, against every page the answer cites."""
    from rag.cite import strictly_supported
    from rag.statements import split_statements

    if answer.abstained:
        return []
    cited = {(c.document, c.page) for c in answer.citations}
    texts = {key: page_text(*key) or "" for key in cited}
    marks = re.compile(r"\[([^\[\]]+?) p\.(\d+)[^\]]*\]")
    unsupported = []
    for line in answer.text.splitlines():
        sentences: list[str] = []
        for piece in split_statements(line.lstrip("-• ").strip()):
            leading = _LEADING_MARKS.match(piece)
            if sentences and leading:  # marks that open a piece end the sentence before it
                sentences[-1] = f"{sentences[-1]} {leading.group(1).strip()}"
                piece = piece[leading.end():].strip()
            if piece:
                sentences.append(piece)
        for sentence in sentences:
            own = {(d.strip(), int(p)) for d, p in marks.findall(sentence)}
            pages = own or cited
            source = " ".join(texts.get(key) or page_text(*key) or "" for key in pages)
            if marks.sub("", sentence).strip() and not strictly_supported(sentence, source):
                unsupported.append(sentence)
    return unsupported


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def run_eval(
    settings: Settings,
    questions: Iterable[Question],
    *,
    docs: Path | None,
    collection: str | None,
    out: TextIO | None,
    progress: bool = True,
) -> list[Scored]:
    """Ingest `docs` (into a fresh temporary data dir unless a collection is given), then answer."""
    from bot.answer_json import answer_record
    from rag.factory import build_engine

    temporary = None
    if collection is None:
        temporary = tempfile.TemporaryDirectory(prefix="folio-eval-")
        settings = settings.model_copy(update={"data_dir": Path(temporary.name)})
        collection = "eval"
    engine = build_engine(settings)
    try:
        if docs is not None:
            report = engine.ingest_paths([docs], collection=collection)
            if report.failures:
                for failure in report.failures:
                    print(f"folio eval: {failure.name}: {failure.reason}", file=sys.stderr)
        engine.warm_up()
        results = []
        items = list(questions)
        for number, question in enumerate(items, start=1):
            started = time.perf_counter()
            answer = engine.answer(question.question, collection=collection,
                                   history=question.history)
            record = {"id": question.id, "question": question.question,
                      **answer_record(answer, time.perf_counter() - started)}
            if question.history:
                record["history"] = [[t.question, t.answer] for t in question.history]
            record["unsupported"] = unsupported_sentences(
                answer, lambda document, page: engine.page_text(collection, document, page)
            )
            scored = score(question, record)
            results.append(scored)
            if out is not None:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
            if progress:
                mark = "abstained" if answer.abstained else f"{len(answer.citations)} citation(s)"
                print(f"[{number}/{len(items)}] {question.id}: {mark}, {record['seconds']:.1f}s",
                      file=sys.stderr)
        return results
    finally:
        engine.close()
        if temporary is not None:
            temporary.cleanup()


def format_summary(summary: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        return "-" if value is None else f"{value}"

    lines = [
        f"{summary['questions']} questions ({summary['answerable']} answerable, "
        f"{summary['unanswerable']} unanswerable), k={summary['k']}",
        f"  retrieval hit@k          {show(summary['hit_at_k'])}",
        f"  retrieval MRR            {show(summary['mrr'])}",
        f"  citation hit             {show(summary['citation_hit'])}",
        f"  citation precision       {show(summary['citation_precision'])}",
        f"  key-fact recall          {show(summary['key_fact_recall'])}",
        f"  abstention (unanswerable) {show(summary['abstention_unanswerable'])}",
        f"  false abstention         {show(summary['false_abstention'])}",
        f"  unsupported answers      {show(summary['unsupported_answers'])}",
        f"  latency p50 / p95        {show(summary['latency_p50_s'])}s / {show(summary['latency_p95_s'])}s",
        "  by kind:",
    ]
    for kind, values in summary["by_kind"].items():
        lines.append(
            f"    {kind:<8} n={values['questions']:<3} hit@k={show(values['hit_at_k'])} "
            f"cite={show(values['citation_hit'])} prec={show(values['citation_precision'])} "
            f"facts={show(values['key_fact_recall'])} "
            f"false-abstain={show(values['false_abstention'])}"
        )
    return "\n".join(lines)


def add_command(commands: Any) -> None:
    parser = commands.add_parser("eval", help="measure answer quality on a question set")
    parser.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    parser.add_argument("--docs", type=Path, default=None, help="folder of PDFs to ingest first")
    parser.add_argument("--out", type=Path, default=None, help="write one JSON line per answer")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("-k", type=int, default=None, help="retrieve this many passages")
    parser.add_argument("--eval-collection", default=None,
                        help="reuse this indexed collection instead of a fresh temporary one")
    parser.set_defaults(handler=_handle)


def _handle(settings: Settings, collection: str, args: argparse.Namespace) -> int:
    if args.k is not None:
        settings = settings.model_copy(
            update={"retrieval": settings.retrieval.model_copy(update={"top_k": args.k})}
        )
    if args.docs is None and args.eval_collection is None:
        print("folio eval: give --docs DIR (or --eval-collection NAME)", file=sys.stderr)
        return 2
    questions = load_questions(args.questions)
    out = args.out.open("w", encoding="utf-8") if args.out else None
    try:
        results = run_eval(settings, questions, docs=args.docs, collection=args.eval_collection,
                           out=out, progress=not args.json)
    finally:
        if out is not None:
            out.close()
    summary = summarize(results, settings.retrieval.top_k)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    return 0
