"""The answer-quality rules, without models: quantity questions prefer sentences with numbers,
figure labels are not evidence, citations stay on pages that answer the question, and a name
the answering documents never mention makes the engine abstain."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.abstain import AbstentionRules, question_names
from rag.answering import page_relevance
from rag.chunk import chunk_document
from rag.cite import GroundedSentence, drop_off_topic_pages
from rag.embed import Vectors
from rag.english import english_words
from rag.extract import (
    Evidence,
    asks_for_a_number,
    keyword_weights,
    prose_ratio,
    rank_evidence,
    states_a_number,
    weighted_share,
)
from rag.parse import PageText, ParsedDocument
from rag.store import DocumentStore
from rag.types import Citation, Passage


class SameVectorEmbedder:
    """Every text gets the same vector, so only keyword overlap and the rules order sentences."""

    dimension = 4
    name = "same-vector"

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.full((len(texts), self.dimension), 0.5, dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return np.full(self.dimension, 0.5, dtype=np.float32)


class TailCloserEmbedder(SameVectorEmbedder):
    """The query's vector equals `tail`'s; every other text is orthogonal to it."""

    def __init__(self, tail: str) -> None:
        self._tail = tail

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.array([[1.0, 0, 0, 0] if t == self._tail else [0, 1.0, 0, 0] for t in texts],
                        dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return np.array([1.0, 0, 0, 0], dtype=np.float32)


def passage(text: str, page: int = 1, document: str = "paper.pdf", chunk_id: int = 1) -> Passage:
    return Passage(chunk_id=chunk_id, document=document, page=page, text=text, score=1.0)


def evidence(page: int, score: float, sentence: str = "", document: str = "paper.pdf") -> Evidence:
    return Evidence(passage(sentence, page, document), sentence or f"sentence on page {page}", score)


# --- quantity questions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "question",
    [
        "How many boats were inspected?",
        "how much money could the app lose per day?",
        "How long is the crossing?",
        "What percentage of passengers are children?",
        "How accurate is the tide forecast?",
        "What was the number of participants?",
    ],
)
def test_quantity_questions_are_recognised(question: str) -> None:
    assert asks_for_a_number(question)


@pytest.mark.parametrize(
    "question",
    [
        "Which harbours were visited most?",
        "Why did the engine fail?",
        "Which chart did the pilots follow?",
        "How do they infer the ferry routes?",
    ],
)
def test_other_questions_are_not_quantity_questions(question: str) -> None:
    assert not asks_for_a_number(question)


@pytest.mark.parametrize(
    "sentence",
    [
        "Out of the 42 ferries, the inspectors passed 37.",
        "The forecast achieved 91.3% accuracy.",
        "The log holds 12.07M readings from 96 buoys.",
        "Inspectors checked 2,417 hulls in total.",
    ],
)
def test_sentences_stating_a_quantity(sentence: str) -> None:
    assert states_a_number(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "We use the tide model (30) to predict the levels [12, 14].",  # citation markers
        "The study was published in 2019 and revised in 2021.",  # years
        "Collection started on March 1, 2020.",  # a date
        "Harbour Safety Review 12:7 the mooring rule is further adopted.",  # a running head
        "As shown in Figure 4 and Table 5, see Section 5.6 and Step 3.",  # parts of the paper
        "MV-7 logs were analysed with WAVE-3.5 and details are in S6.",  # names with digits
        "3 A Field Survey Existing moorings adopt simple designs.",  # a section number
    ],
)
def test_numbers_that_are_not_quantities(sentence: str) -> None:
    assert not states_a_number(sentence)


def test_a_quantity_question_ranks_the_sentence_with_the_number_first() -> None:
    text = (
        "The pump was tested on several vessels in the trial. "
        "The pump was tested on 36 vessels in the trial."
    )
    question = "How many vessels was the pump tested on?"
    ranked = rank_evidence(question, [passage(text)], SameVectorEmbedder())
    assert ranked[0].sentence == "The pump was tested on 36 vessels in the trial."
    assert ranked[0].score > ranked[1].score
    # Without the rule the two sentences tie: the bonus is what orders them.
    plain = rank_evidence(question, [passage(text)], SameVectorEmbedder(), number_bonus=0.0)
    assert plain[0].score == pytest.approx(plain[1].score)


def test_a_question_that_asks_no_quantity_gets_no_number_bonus() -> None:
    text = (
        "The pump was tested on several vessels in the trial. "
        "The pump was tested on 36 vessels in the trial."
    )
    ranked = rank_evidence(
        "Which vessels was the pump tested on?", [passage(text)], SameVectorEmbedder()
    )
    assert ranked[0].score == pytest.approx(ranked[1].score)


def test_words_the_collection_never_uses_do_not_count_against_the_match() -> None:
    """A casually worded question ("our certs have sloppy timestamps: ...") holds words no
    document has; they cannot be matched by any sentence, so the share of the question's words
    a sentence holds is taken over the others (the abstention threshold reads this share)."""
    text = "The decoder checks the time fields strictly. The library parses schemas."
    question = "Does the decoder check time fields strictly for our sloppy certs?"
    plain = rank_evidence(question, [passage(text)], SameVectorEmbedder())
    casual = rank_evidence(question, [passage(text)], SameVectorEmbedder(),
                           unmatchable={"sloppy", "cert"})
    assert casual[0].sentence == plain[0].sentence == "The decoder checks the time fields strictly."
    # It holds all five words the documents use (decoder, check, time, field, strictly), and
    # five of the question's seven.
    assert casual[0].match - plain[0].match == pytest.approx(1.5 * (5 / 5 - 5 / 7))
    # The ranking score still counts every word: it decides which sentences join the lead.
    assert [e.score for e in casual] == pytest.approx([e.score for e in plain])


# --- which question words choose among the candidates ------------------------------------------


def test_the_words_few_candidates_share_choose_the_sentence_not_the_topic_s_words() -> None:
    """Every sentence of the passages found is about the topic ("the housekeeping SPI"), so
    sharing its words tells them apart less than sharing the word only one of them has."""
    text = (
        "The housekeeping SPI can be accessed even when the CPU is in full reset. "
        "The housekeeping SPI can be accessed by the CPU from a running program. "
        "In normal conditions it is only used to adjust the clock speed."
    )
    question = "When is the housekeeping SPI accessed under normal conditions?"
    ranked = rank_evidence(question, [passage(text)], SameVectorEmbedder())
    assert ranked[0].sentence.startswith("In normal conditions")
    # How closely each answers at all (what the abstention threshold reads) still counts every
    # question word the same: there the topic's sentences match more words.
    by_match = max(ranked, key=lambda e: e.match)
    assert by_match.sentence.startswith("The housekeeping SPI")
    assert by_match.match > ranked[0].match


def test_a_word_every_candidate_shares_weighs_nothing() -> None:
    weights = keyword_weights({"pump", "vessels"}, [{"pump", "vessels"}, {"pump"}, {"pump"}])
    assert weights["pump"] == 0.0 and weights["vessels"] > 0.0
    assert weighted_share({"pump"}, weights) == 0.0
    assert weighted_share({"pump"}, {"pump": 0.0}) == 0.0  # nothing tells them apart


# --- figure labels -----------------------------------------------------------------------------

FIGURE_LABELS = (
    "Harbour Map Pier Labels Ferry Route Tide Gauge Sample Readings Buoy Marker Signal "
    "Controller Light Beacon Route Planner Legend Generation."
)


class ContextCloserEmbedder(SameVectorEmbedder):
    """Every sentence is as close to the question; only `continued` is close to `context`."""

    def __init__(self, context: str, continued: str) -> None:
        self._context, self._continued = context, continued

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.array([[0.6, 0.8, 0, 0] if t == self._continued else [0.6, 0, 0.8, 0]
                         for t in texts], dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return np.array([0, 1.0, 0, 0] if text == self._context else [1.0, 0, 0, 0],
                        dtype=np.float32)


def test_a_follow_up_prefers_the_sentence_that_continues_the_previous_answer() -> None:
    said = "Comments were filtered by keywords before they were counted."
    continued = "The filter kept comments holding one of late, cancelled or rough sea."
    other = "The ferry survey collected comments at the harbour office every summer."
    passages = [passage(f"{other} {continued}")]
    embedder = ContextCloserEmbedder(said, continued)
    question = "which terms exactly? (survey comments)"
    plain = rank_evidence(question, passages, embedder)
    assert plain[0].sentence == other  # keyword overlap alone points at the topic's sentence
    followed = rank_evidence(question, passages, embedder, context=said, context_weight=0.6)
    assert followed[0].sentence == continued
    assert followed[0].score == pytest.approx(plain[1].score + 0.6 * 0.8, abs=1e-5)


def test_prose_and_figure_labels_are_told_apart() -> None:
    assert prose_ratio("The ferry to the island departs every ninety minutes from the pier.") > 0.3
    assert prose_ratio(FIGURE_LABELS) < 0.05
    assert prose_ratio("") == 0.0


def test_figure_labels_are_not_evidence() -> None:
    text = f"{FIGURE_LABELS} The route planner reads the tide gauge to time each departure."
    ranked = rank_evidence(
        "Which gauge does the route planner read?", [passage(text)], SameVectorEmbedder()
    )
    assert [e.sentence for e in ranked] == [
        "The route planner reads the tide gauge to time each departure."
    ]


def test_the_tail_of_a_sentence_cut_by_a_chunk_boundary_is_not_quoted_beside_the_whole() -> None:
    whole = ("If the source deasserts the interrupt, the request remains pending in the core and "
             "will be serviced by a handler.")
    tail = "remains pending in the core and will be serviced by a handler."
    passages = [passage(tail, chunk_id=1), passage(f"The gateway forwards requests. {whole}",
                                                   chunk_id=2)]
    ranked = rank_evidence("What happens to a deasserted interrupt request?", passages,
                           SameVectorEmbedder())
    assert [e.sentence for e in ranked if "handler" in e.sentence] == [whole]
    # ... and the whole sentence keeps the tail's score when the tail matched the question better.
    tail_first = rank_evidence("Is the request serviced by a handler?", passages,
                               TailCloserEmbedder(tail))
    alone_tail = rank_evidence("Is the request serviced by a handler?", passages[:1],
                               TailCloserEmbedder(tail))
    whole_item = next(e for e in tail_first if e.sentence == whole)
    # (`match` does not depend on the other candidates, as the keyword weights of `score` do.)
    assert whole_item.match == pytest.approx(alone_tail[0].match)
    assert whole_item.score == max(e.score for e in tail_first)
    # Alone, the tail is still evidence: it is left out only beside the sentence it came from.
    alone = rank_evidence("What happens to a deasserted interrupt request?", passages[:1],
                          SameVectorEmbedder())
    assert [e.sentence for e in alone] == [tail]


# --- citations stay on pages that answer the question ------------------------------------------


def grounded(page: int, text: str = "A claim.") -> GroundedSentence:
    return GroundedSentence(text, Citation("paper.pdf", page, "quote"))


def test_sentences_grounded_on_far_less_relevant_pages_lose_their_citation() -> None:
    relevance = {("paper.pdf", 3): 1.4, ("paper.pdf", 5): 1.2, ("paper.pdf", 9): 0.9}
    result = drop_off_topic_pages(
        [grounded(3), grounded(5), grounded(9), GroundedSentence("Unsupported.", None)],
        relevance,
        margin=0.3,
    )
    assert [g.citation.page if g.citation else None for g in result] == [3, 5, None, None]
    assert [g.text for g in result] == ["A claim.", "A claim.", "A claim.", "Unsupported."]


def test_a_page_without_evidence_counts_as_irrelevant_and_no_evidence_changes_nothing() -> None:
    result = drop_off_topic_pages([grounded(7)], {("paper.pdf", 3): 1.0}, margin=0.3)
    assert result[0].citation is None
    assert drop_off_topic_pages([grounded(7)], {}, margin=0.3) == [grounded(7)]


def test_page_relevance_is_the_best_sentence_score_per_page() -> None:
    items = [evidence(3, 1.4), evidence(5, 1.2), evidence(3, 0.7), evidence(5, 1.3)]
    assert page_relevance(items) == {("paper.pdf", 3): 1.4, ("paper.pdf", 5): 1.3}


def test_question_names_are_capitalised_words_inside_a_sentence() -> None:
    assert question_names("How many MV-7 ferries were built in Norway?") == [
        "MV-7",
        "Norway",
    ]
    assert question_names("What does I mean? Tell me about Lisbon.") == ["Lisbon"]
    assert question_names("what about the harbour?") == []


def put(store: DocumentStore, name: str, pages: list[str]) -> None:
    parsed = ParsedDocument(
        title="", pages=[PageText(i + 1, t, has_text=True) for i, t in enumerate(pages)]
    )
    chunks = chunk_document(parsed.pages, 110, 0)
    vectors = np.full((len(chunks), 4), 0.5, dtype=np.float32)
    store.put_document("papers", name, f"sha-{name}", parsed, chunks, vectors)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DocumentStore]:
    store = DocumentStore(tmp_path / "documents.sqlite")
    put(store, "ferries.pdf", ["We counted English ferries crossing the bay from March."])
    put(store, "charts.pdf", ["Charts are printed in Spanish and in French for the crews."])
    yield store
    store.close()


def test_term_search_can_be_scoped_to_some_documents(store: DocumentStore) -> None:
    assert store.term_in_collection("papers", "spanish")
    assert store.term_in_collection("papers", "spanish", ["charts.pdf"])
    assert not store.term_in_collection("papers", "spanish", ["ferries.pdf"])
    assert store.term_in_collection("papers", "english", ["ferries.pdf", "charts.pdf"])
    assert not store.term_in_collection("other", "spanish", ["charts.pdf"])


def test_a_name_the_answering_documents_never_mention_is_reported(
    store: DocumentStore,
) -> None:
    rules = AbstentionRules(store, frozenset)
    ferries = [passage("We counted English ferries.", document="ferries.pdf")]
    charts = [passage("Printed in Spanish.", document="charts.pdf")]
    question = "How many counted Bay ferries were crewed in Spanish?"
    # "Spanish" is in the collection, but not in the document the passages come from.
    assert rules.names_missing_from(question, ferries, "papers") == ["spanish"]
    assert rules.names_missing_from(question, ferries + charts, "papers") == []
    # Names the documents do mention, and words that merely open the question, pass.
    assert rules.names_missing_from("Were English ferries counted?", ferries, "papers") == []
    assert rules.names_missing_from("Bay ferries?", ferries, "papers") == []
    assert rules.names_missing_from(question, [], "papers") == []


def test_an_everyday_word_in_lower_case_is_no_unknown_name(store: DocumentStore) -> None:
    """With the packaged English word list: casual wording the documents never use is no
    reason to decline; a name is, and so is an everyday word written as a name."""
    rules = AbstentionRules(store, frozenset, english_words)
    assert rules.unknown_terms("can we regenerate the gnarly ferries list?", "papers") == []
    assert rules.unknown_terms("did they use mturk for the ferries?", "papers") == ["mturk"]
    assert rules.unknown_terms("was the Gnarly survey of ferries cited?", "papers") == ["gnarly"]


def test_a_name_said_short_is_mentioned_by_the_longer_word_in_the_passages(
    store: DocumentStore,
) -> None:
    rules = AbstentionRules(store, lambda: frozenset(["parse", "under"]))
    found = [passage("Libtasn1 parses the ferries schema.", document="ferries.pdf")]
    assert rules.unknown_terms("does tasn1 parse it?", "papers", found) == []
    assert rules.unknown_terms("does tasn1 parse it?", "papers") == ["tasn1"]
    # Three letters are too few to be a name's part ("gpl" inside "lgpl" is another licence).
    lgpl = [passage("The library is under the LGPL.", document="ferries.pdf")]
    assert rules.unknown_terms("is it under the GPL?", "papers", lgpl) == ["gpl"]
    # In the file name of the document the passages come from, and written in parts.
    named = [passage("The parser reads the ferries schema.", document="libtasn1.pdf")]
    assert rules.unknown_terms("does tasn1 parse it?", "papers", named) == []
    parts = [passage("Alpha Zero counted the ferries.", document="ferries.pdf")]
    assert rules.unknown_terms("which ferries did AlphaZero count?", "papers", parts) == []
    assert rules.unknown_terms("which ferries did AlphaBeta count?", "papers", parts) == [
        "alphabeta"]


def test_a_hyphenated_name_is_judged_by_its_name_parts(store: DocumentStore) -> None:
    rules = AbstentionRules(store, lambda: frozenset(["high", "resolution", "parse", "build"]))
    found = [passage("Libtasn1 parses the ferries schema.", document="ferries.pdf")]
    assert rules.unknown_terms("which ferries does git-buildpackage parse?", "papers",
                               found) == ["git-buildpackage"]
    # Wording, and a name the passages do mention with a prefix, are no unknown names.
    assert rules.unknown_terms("are high-resolution ferries parsed?", "papers", found) == []
    assert rules.unknown_terms("do pre-Libtasn1 ferries parse?", "papers", found) == []


def test_the_english_word_list_is_read_from_its_package_or_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = english_words()
    assert all(word in words for word in ("regenerate", "bake", "linker"))
    assert "fedramp" not in words and words["the"] > words["linker"]
    import rag.english

    monkeypatch.setattr(rag.english, "_PACKAGE", "no_such_word_list_package")
    with pytest.raises(RuntimeError, match="pip install pyspellchecker"):
        rag.english.english_words_file()


def test_a_lower_case_compound_of_common_words_is_no_unknown_name(store: DocumentStore) -> None:
    vocabulary = frozenset(["cut", "off", "site", "fed", "ramp", "length", "well", "use", "did",
                            "they", "vendors", "need", "approval", "paper", "cited"])
    rules = AbstentionRules(store, lambda: vocabulary)
    # The ferries paper says "threshold", not "cutoff": an everyday word, so not a reason to
    # decline; but a name nobody wrote down is, and so is the same compound written as a name.
    assert rules.unknown_terms("was there a length cutoff as well?", "papers") == []
    assert rules.unknown_terms("which cutoffs did they use?", "papers") == []
    assert rules.unknown_terms("do vendors need FedRAMP approval?", "papers") == ["fedramp"]
    assert rules.unknown_terms("was the Cutoff paper cited?", "papers") == ["cutoff"]
    assert rules.unknown_terms("did they use mturk?", "papers") == ["mturk"]


def test_words_that_only_name_the_document_cannot_count_against_a_sentence() -> None:
    from rag.answering import naming_only

    pages = [passage("This handbook helps teams with de-risking projects.",
                     document="18f-derisking-handbook.pdf")]
    # "derisking" names the file; its pages write "de-risking". "handbook" is on the page.
    assert naming_only("what does the derisking handbook say about vendors?", pages) == {"derisk"}
    assert naming_only("what does the handbook say about vendors?", pages) == set()
    assert naming_only("what does the derisking handbook say?", []) == set()
