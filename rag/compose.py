"""Evidence-first answers: the documents' own sentences, chosen for coverage, each with its page.

A 135M-parameter model paraphrases badly, drops the key fact and sometimes invents; the
documents' sentences are already the best statement of what they say. So the answer is built
from the ranked evidence sentences (rag.extract): the best one leads, then sentences that add
something new (not a near-repeat of one already chosen), from pages that answer the question
about as well as the best page does. A list question gets one item per line, each with its page;
a why/how question gets the sentences that give the reason or the steps; a lookup leads with the
sentence that holds the fact. A statement that announces a list ("... only for:", "two attacks")
brings the items after it, a piece of a sentence (chunks overlap by words) is quoted whole, and
a running header or footer (rag.running_text) is left out.
Every sentence is quoted verbatim, so each is supported by the page it cites by construction;
its quote is still checked against the stored page text.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from typing import Literal

from rag.cite import content_words
from rag.extract import (
    MAX_SENTENCE_WORDS,
    MIN_PROSE_RATIO,
    MIN_SENTENCE_WORDS,
    Evidence,
    prose_ratio,
)
from rag.normalize import normalize_for_match
from rag.running_text import RunningText
from rag.statements import (
    BULLET_STYLE,
    item_number,
    next_item,
    opens_with_enumerator,
    split_statements,
    whole_statement,
)
from rag.types import Citation

QuestionKind = Literal["list", "why", "lookup"]

_LIST = re.compile(
    r"\b(?:list|enumerate|name (?:the|all|some|three|two|four|five)|what (?:are|were) (?:the )?"
    r"(?:main |key |different |two |three |four |five )?\w+s\b|which \w+s\b|"
    r"what \w+s (?:are|do|does|did|were|can)\b|"
    r"types of|kinds of|examples of|categories of|steps|components|features|options|"
    r"requirements|responsibilities|methods|techniques|approaches)",
    re.IGNORECASE,
)
_WHY = re.compile(
    r"^\s*(?:why|how (?:does|do|did|is|are|can|should|would|could)|what (?:is|was) the "
    r"(?:purpose|reason|goal|point|rationale|motivation)|for what purpose|what happens)\b",
    re.IGNORECASE,
)
# Display only: markup a document's text layer carries, and its own bracketed reference
# numbers ("[12]", "[3, 4]"), which would read like Folio's page citations.
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,80}>")
_REFERENCE = re.compile(r"\s?\[\d+(?:\s*[,–-]\s*\d+)*\]")
# The next item's enumerator ("b.", "(2)") that sentence splitting leaves at the end of a list
# item: it belongs to text that is not shown. A number with a full stop ("is 5.") is a fact.
_TRAILING_ENUMERATOR = re.compile(r"(?<=[.;:])\s+(?:[a-z]\.|[ivx]{2,4}\.|\([a-z0-9ivx]{1,3}\))$")
# A sentence that opens by pointing back ("In this case, two instructions are removed...")
# means little without the one before it, which usually states the reason or the subject.
_REFERS_BACK = re.compile(
    r"^(?:\(?\w{1,3}[.)]\s+)?(?:this|these|that|those|it|its|they|their|such|in (?:this|that) "
    r"(?:case|way)|however|therefore|thus|hence|as a result|for this reason|otherwise|then|"
    r"also|instead)\b",
    re.IGNORECASE,
)


# A statement that announces the items after it: a lead-in ("... only for:", "... for the
# following: (1) TDY ...") followed by enumerated items, or a count ("introduces two simple
# attacks ...") followed by ordinal sentences that start at the first ("The first attack is ...").
_LEAD_IN = re.compile(
    r":$|:\s+(?:\(?(?:\d{1,2}|[A-Za-z])[.)]|[•◦▪‣●■])\s|\bbelow\b(?!\s*[$\d])"
    # "the following sections" point elsewhere in the document, not to items after them
    r"|\bfollowing\b(?!\s+(?:sections?|chapters?|pages?|parts?|paragraphs?)\b)",
    re.IGNORECASE,
)
# Items announced inside the lead-in itself (": (1) ...", ": • ...").
_INLINE_ITEMS = re.compile(r":\s+(?:\(?(?:\d{1,2}|[A-Za-z])[.)]|[•◦▪‣●■])\s")
# A bulleted list that text extraction ran into sentences: its bullets stand inside them
# ("... to start with. • Package is waiting ..."), not at their start.
_BULLET_INSIDE = re.compile(r"(?:^|\s)[•◦▪‣●■]\s")
_RUN_ON_SENTENCES = 2  # sentences an enumerated item may run on for, before its next item
_COUNT = re.compile(r"\b(?:two|three|four|five|six|several)\b", re.IGNORECASE)
_FIRST = re.compile(r"^(?:the |in the |a )?first\b", re.IGNORECASE)
_ORDINAL = re.compile(
    r"^(?:the |in the |a )?(?:second|third|fourth|fifth|sixth|next|last|another|finally|lastly)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class CompositionLimits:
    """How much evidence an answer may carry (calibrated by cross-validation on both dev sets)."""

    sentences: int = 5  # lookup and why/how answers
    list_items: int = 4  # list answers
    score_margin: float = 0.8  # keep sentences scoring within this of the best sentence
    page_margin: float = 0.0  # ... on pages whose score is within this of the best page's
    redundancy: float = 0.6  # a sentence with this share of its words already said adds nothing
    rank_weight: float = 0.1  # page choice: score lost per place in the retrieval ranking
    coverage_weight: float = 0.5  # page choice: worth of the share of question words on the page
    passage_weight: float = 0.2  # page choice: worth of each retrieved passage from the page
    part_sentences: int = 3  # what each later part of a two-part question adds (rag.answering)


@dataclass(frozen=True, slots=True)
class Part:
    """One sentence of the answer and the page it quotes."""

    text: str
    citation: Citation


def question_kind(question: str) -> QuestionKind:
    """list, why (a reason, purpose or mechanism) or lookup (one fact), from the wording alone."""
    if _WHY.search(question):
        return "why"
    if _LIST.search(question):
        return "list"
    return "lookup"


def display_text(sentence: str) -> str:
    """A document sentence as shown: without markup or bracketed reference numbers."""
    text = _REFERENCE.sub("", _TAG.sub(" ", sentence))
    text = re.sub(r"\s+", " ", text).strip()
    return _TRAILING_ENUMERATOR.sub("", text)


def page_scores(
    evidence: Sequence[Evidence],
    limits: CompositionLimits,
    question_words: Set[str] = frozenset(),
) -> dict[tuple[str, int], float]:
    """How well each page answers, from several signals rather than one: its best sentence's
    score, less `rank_weight` per place its best passage stands below the first in retrieval,
    plus `coverage_weight` times the share of the question's words its passages contain, plus
    `passage_weight` per retrieved passage from it (a page the search keeps returning)."""
    order = sorted({e.passage.chunk_id: e.passage.score for e in evidence}.items(),
                   key=lambda item: -item[1])
    rank = {chunk_id: position for position, (chunk_id, _) in enumerate(order)}
    texts: dict[tuple[str, int], dict[int, str]] = {}
    for item in evidence:
        key = (item.passage.document, item.passage.page)
        texts.setdefault(key, {})[item.passage.chunk_id] = item.passage.text
    bonus = {}
    for key, passages in texts.items():
        coverage = (len(question_words & content_words(" ".join(passages.values())))
                    / len(question_words)) if question_words else 0.0
        bonus[key] = limits.coverage_weight * coverage + limits.passage_weight * len(passages)
    scores: dict[tuple[str, int], float] = {}
    for item in evidence:
        key = (item.passage.document, item.passage.page)
        score = item.score - limits.rank_weight * rank[item.passage.chunk_id] + bonus[key]
        scores[key] = max(scores.get(key, score), score)
    return scores


def choose_evidence(
    evidence: Sequence[Evidence],
    kind: QuestionKind,
    limits: CompositionLimits,
    question_words: Set[str] = frozenset(),
    page_text: Callable[[str, int], str | None] | None = None,
    context_weight: float = 0.0,
) -> list[Evidence]:
    """The best sentence of the best page first, then the next best sentences that score close
    to the best, stand on a page nearly as good as the best page, and are not near-repeats of a
    sentence already chosen."""
    if not evidence:
        return []
    pages = page_scores(evidence, limits, question_words)
    best_page = max(pages, key=lambda key: pages[key])

    def asked_now(item: Evidence) -> float:
        """The score for the question alone: a follow-up's closeness to the previous answer
        picks where to look, but a sentence restating it must not push out the new fact."""
        return item.score - context_weight * item.context

    floor = max(asked_now(e) for e in evidence) - limits.score_margin
    most = limits.list_items if kind == "list" else limits.sentences
    candidates = [e for e in evidence
                  if (e.passage.document, e.passage.page) == best_page] + [
        e for e in evidence if (e.passage.document, e.passage.page) != best_page]
    lead = candidates[0]
    rest = sorted(candidates[1:], key=lambda e: -e.score)
    chosen: list[Evidence] = []
    said: list[set[str]] = []
    for item in [lead, *rest]:
        if len(chosen) >= most:
            break
        key = (item.passage.document, item.passage.page)
        if item is not lead and (
            asked_now(item) < floor or pages[key] < pages[best_page] - limits.page_margin
        ):
            continue
        words = content_words(item.sentence)
        if words and any(len(words & earlier) / len(words) >= limits.redundancy
                         and not _items_of_one_list(item, other)
                         for earlier, other in zip(said, chosen, strict=True)):
            continue
        chosen.append(item)
        said.append(words)
    if kind != "lookup" and chosen and _announces(chosen[0].sentence) is None:
        chosen = _with_next(chosen, page_text)  # a lead-in brings its items instead (below)
    chosen = _with_gaps(_with_items(_with_antecedents(chosen), 2 * limits.list_items, page_text),
                        page_text)
    return _with_continuations(chosen, page_text)


def _items_of_one_list(item: Evidence, other: Evidence) -> bool:
    """Whether both are enumerated items on one page ("A. Under Non-Patent Rights: ...",
    "B. Under Patent Rights: ..."): parallel items share most words but each says its own."""
    return (item.passage.document, item.passage.page) == (
        other.passage.document, other.passage.page) and (
        opens_with_enumerator(item.sentence) and opens_with_enumerator(other.sentence))


def _with_items(
    chosen: Sequence[Evidence], most: int, page_text: Callable[[str, int], str | None] | None
) -> list[Evidence]:
    """The first chosen statement that announces a list is followed by the items after it on
    its page (at most `most`): the lead-in alone names none of them. The items take the places
    of the lower-ranked statements, so the answer grows only if the list is longer."""
    for index, item in enumerate(chosen):
        lead_in = _announces(item.sentence)
        if lead_in is None:
            continue
        page = page_text(item.passage.document, item.passage.page) if page_text else None
        before = {e.sentence for e in chosen[: index + 1]}
        items = [following
                 for following in _announced_items(item.sentence, page or item.passage.text,
                                                   lead_in=lead_in, most=most)
                 if following not in before]
        if items:
            expanded = [*chosen[: index + 1],
                        *(Evidence(item.passage, following, item.score) for following in items)]
            # An item chosen on its own moves up into its list rather than standing twice.
            rest = [e for e in chosen[index + 1:] if e.sentence not in items]
            # An item's run-on sentences take no one's place: they are part of the item.
            run_on = sum(1 for following in items if item_number(following) is None) if lead_in else 0
            return expanded + rest[: max(0, len(chosen) - len(expanded) + run_on)]
    return list(chosen)


def _announces(sentence: str) -> bool | None:
    """True for a lead-in to enumerated items, False for a count of ordinal sentences, None
    when the sentence announces nothing."""
    if _LEAD_IN.search(sentence.rstrip()):
        return True
    return False if _COUNT.search(sentence) else None


def _announced_items(sentence: str, text: str, *, lead_in: bool, most: int) -> list[str]:
    """The items (at most `most`) that follow `sentence` in `text` (its page or passage; the
    items may be in the next chunk). An enumerated item may run on for a sentence or two
    ("(1) ... referred to NCIS. Record of the referral will be kept ..."): they come with it
    when the next item continues the numbering ("(2) ...") or is another bullet. A lead-in
    followed by no enumerated item brings the one statement after it: a table or a list that
    text extraction ran together ("Directory Description bin Essential ... srv Data for ...").
    Measured: held-out 2's key facts 0.400 -> 0.514, the other five sets unchanged."""
    statements = split_statements(text, MAX_SENTENCE_WORDS)
    at = _position(sentence, [normalize_for_match(statement) for statement in statements])
    if at is None:
        return []
    items: list[str] = []
    counted = 0
    run_on: list[str] = []
    last: tuple[str, int] | None = None
    for following in statements[at + 1:]:
        if counted >= most:
            break
        if not lead_in:  # the first, then the second, third ... or "another", "finally"
            if not (_ORDINAL if items else _FIRST).match(following):
                break
            items.append(following)
            counted += 1
            continue
        number = item_number(following) or (
            (BULLET_STYLE, 0) if _BULLET_INSIDE.search(following) else None)
        if number is None:
            if not items and not run_on and not _INLINE_ITEMS.search(sentence) and len(
                    following.split()) >= MIN_SENTENCE_WORDS:
                return [following]  # a table or a list run into one statement
            if not items or len(run_on) >= _RUN_ON_SENTENCES:
                break
            run_on.append(following)
            continue
        if run_on and (last is None or not next_item(last, number)):
            break
        items += [*run_on, following]
        run_on = []
        last = number
        counted += 1
    return items


def _with_gaps(
    chosen: Sequence[Evidence], page_text: Callable[[str, int], str | None] | None
) -> list[Evidence]:
    """Chosen statements of one page with one or two statements between them are quoted as
    one run, in reading order, with the statements between: they are about the same thing,
    and that is where a fact the ranking missed often is ("Both methods need the Java runtime
    environment, version 5 or later." between two sentences about running the jar). A run
    goes on while the next chosen statement is at most three on (a heading, its first sentence
    and a reason two statements later are one run). The run stands where the best of its
    statements stood, and takes no one's place. Headings and fragments between them break the
    run. Measured: team documents' key facts 0.660 -> 0.689, the other dev sets unchanged,
    answers 6-10% longer; README, Quality."""
    pages: dict[tuple[str, int], list[int]] = {}
    for index, item in enumerate(chosen):
        pages.setdefault((item.passage.document, item.passage.page), []).append(index)
    runs: dict[int, list[Evidence]] = {}  # the best one's index -> the run that replaces it
    folded: set[int] = set()  # the others' indexes, now inside a run
    quoted = {normalize_for_match(item.sentence) for item in chosen}
    for indexes in pages.values():
        if len(indexes) < 2:
            continue
        text = _page_of(chosen[indexes[0]], page_text)
        statements = split_statements(text, MAX_SENTENCE_WORDS)
        normalised = [normalize_for_match(statement) for statement in statements]
        placed = sorted((p, i) for i in indexes
                        if (p := _position(chosen[i].sentence, normalised)) is not None)

        groups: list[list[tuple[int, int]]] = []
        for position, index in placed:
            if groups and _bridgeable(groups[-1][-1][0], position, statements, normalised, quoted):
                groups[-1].append((position, index))
            else:
                groups.append([(position, index)])
        for group in groups:
            if len(group) < 2 or all(b - a == 1 for (a, _), (b, _) in itertools.pairwise(group)):
                continue  # neighbours with nothing between keep the ranking's order
            best = min(index for _, index in group)
            score = max(chosen[index].score for _, index in group)
            run: list[Evidence] = []
            for (position, index), following in itertools.zip_longest(group, group[1:]):
                run.append(chosen[index])
                if following is not None:
                    run.extend(Evidence(chosen[index].passage, statements[g], score)
                               for g in range(position + 1, following[0]))
                    quoted.update(normalised[g] for g in range(position + 1, following[0]))
            runs[best] = run
            folded.update(index for _, index in group if index != best)
    expanded: list[Evidence] = []
    for index, item in enumerate(chosen):
        if index in folded:
            continue
        expanded.extend(runs.get(index, [item]))
    return expanded


def _bridgeable(first: int, second: int, statements: Sequence[str], normalised: Sequence[str],
                quoted: Set[str]) -> bool:
    """Whether statements `first` and `second` of a page are one run: at most two statements
    between them, none already quoted, a heading or a fragment."""
    return 1 <= second - first <= 3 and not any(
        normalised[g] in quoted or len(statements[g].split()) < MIN_SENTENCE_WORDS
        or prose_ratio(statements[g]) < MIN_PROSE_RATIO for g in range(first + 1, second))


def _with_continuations(
    chosen: Sequence[Evidence], page_text: Callable[[str, int], str | None] | None
) -> list[Evidence]:
    """A statement cut at the word limit (a bulleted list that text extraction runs together
    is one long statement) is followed by its next piece: the items asked for go on there.
    Every kind of question: "what output files does it write?" reads as a lookup. Measured:
    the dev sets unchanged, answers up to 5% longer (README, Quality)."""
    quoted = {normalize_for_match(item.sentence) for item in chosen}
    expanded: list[Evidence] = []
    for item in chosen:
        expanded.append(item)
        if len(item.sentence.split()) < MAX_SENTENCE_WORDS:
            continue
        text = _page_of(item, page_text)
        for statement in split_statements(text):
            words = statement.split()
            pieces = [" ".join(words[start:start + MAX_SENTENCE_WORDS])
                      for start in range(0, len(words), MAX_SENTENCE_WORDS)]
            at = _position(item.sentence, [normalize_for_match(piece) for piece in pieces])
            if at is None:
                continue
            if at + 1 < len(pieces) and normalize_for_match(pieces[at + 1]) not in quoted:
                expanded.append(Evidence(item.passage, pieces[at + 1], item.score))
                quoted.add(normalize_for_match(pieces[at + 1]))
            break
    return expanded


def _with_next(
    chosen: Sequence[Evidence], page_text: Callable[[str, int], str | None] | None
) -> list[Evidence]:
    """The lead of a list or why/how answer is followed by the statement after it on its page:
    steps and reasons go on in the next sentence. It takes no one's place. Measured: papers
    follow-ups' key facts 0.345 -> 0.414, the other five sets unchanged (README, Quality)."""
    lead = chosen[0]
    text = _page_of(lead, page_text)
    statements = split_statements(text, MAX_SENTENCE_WORDS)
    normalised = [normalize_for_match(statement) for statement in statements]
    at = _position(lead.sentence, normalised)
    if at is None or at + 1 >= len(statements):
        return list(chosen)
    following = statements[at + 1]
    quoted = {normalize_for_match(item.sentence) for item in chosen}
    if (normalised[at + 1] in quoted or len(following.split()) < MIN_SENTENCE_WORDS
            or prose_ratio(following) < MIN_PROSE_RATIO):
        return list(chosen)
    return [lead, Evidence(lead.passage, following, lead.score), *chosen[1:]]


def _page_of(item: Evidence, page_text: Callable[[str, int], str | None] | None) -> str:
    """The stored text of the item's page, or its passage's when the page is not at hand."""
    page = page_text(item.passage.document, item.passage.page) if page_text else None
    return page or item.passage.text


def _position(sentence: str, normalised: Sequence[str]) -> int | None:
    """Where `sentence` stands among a page's (normalised) statements."""
    wanted = normalize_for_match(sentence)
    return next((i for i, s in enumerate(normalised) if wanted and wanted in s), None)


def _with_antecedents(chosen: Sequence[Evidence]) -> list[Evidence]:
    """Each chosen sentence that refers back is preceded by the statement it refers to."""
    quoted = {item.sentence for item in chosen}
    expanded: list[Evidence] = []
    for item in chosen:
        if item.before and item.before not in quoted and _REFERS_BACK.match(item.sentence):
            expanded.append(Evidence(item.passage, item.before, item.score))
            quoted.add(item.before)
        expanded.append(item)
    return expanded


def compose(
    question: str,
    evidence: Sequence[Evidence],
    page_text: Callable[[str, int], str | None],
    limits: CompositionLimits,
    query: str = "",
    context_weight: float = 0.0,
) -> list[Part]:
    """The answer's parts, best first; a sentence whose quote cannot be verified is left out.
    `query` is what was searched for (a follow-up's standalone question), if not `question`;
    `context_weight` is what a follow-up's closeness to its previous answer added to the scores."""
    kind = question_kind(question)
    parts = []
    quoted: set[str] = set()
    page_text = functools.cache(page_text)  # a page is read once, however many parts quote it
    running = RunningText(page_text)
    for item in choose_evidence(evidence, kind, limits, content_words(query or question),
                                page_text, context_weight):
        document, page = item.passage.document, item.passage.page
        stored = page_text(document, page)
        if stored is None or normalize_for_match(item.sentence) not in normalize_for_match(stored):
            continue
        sentence = running.strip(whole_statement(item.sentence, stored, MAX_SENTENCE_WORDS),
                                 document, page)
        text = display_text(sentence)
        if text and sentence not in quoted:
            quoted.add(sentence)
            quote = " ".join(sentence.split()[:25])
            parts.append(Part(text, Citation(document, page, quote)))
    return parts


def render_parts(question: str, parts: Sequence[Part]) -> str:
    """The answer text: list items one per line, other answers as prose; each with its page."""
    if not parts:
        return ""
    if question_kind(question) == "list" and len(parts) > 1:
        return "\n".join(f"- {p.text} {p.citation.render()}" for p in parts)
    # Prose: a page's mark closes the run of sentences taken from it, not every sentence.
    pieces = []
    for index, part in enumerate(parts):
        following = parts[index + 1] if index + 1 < len(parts) else None
        same_page = following is not None and following.citation.render() == part.citation.render()
        pieces.append(part.text if same_page else f"{part.text} {part.citation.render()}")
    return " ".join(pieces)
