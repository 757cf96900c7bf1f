"""The engine end to end with the REAL embedded models, a real SQLite file and FAISS files.

One engine is shared by the module (models load once); each test that changes documents uses a
collection of its own, so tests do not depend on their order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pdfs
import pytest
from scripted_generator import ScriptedGenerator

from config.settings import Settings
from rag.chunk import split_sentences
from rag.cite import strictly_supported
from rag.engine import RagEngine
from rag.errors import GenerationCancelled, NotFoundError
from rag.factory import build_engine
from rag.index import FaissIndex, index_file
from rag.normalize import normalize_for_match
from rag.store import DocumentStore
from rag.types import Answer, AnswerProgress, IngestReport, Turn

pytestmark = pytest.mark.slow

GUIDE = [
    "Harbor Lights Ferry Company operates passenger boats across the bay. The company was "
    "founded by sailors who wanted a reliable crossing for the island villages.",
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. A single adult ticket "
    "costs 14 euros and children under twelve travel free. The crossing takes forty minutes in "
    "calm weather.",
    "Lost property is kept at the harbour office for thirty days. Passengers can collect items "
    "between nine and five on weekdays.",
]
QUESTION = "How often does the ferry to Marrow Island depart?"
OFF_TOPIC = "What is the boiling point of tungsten?"


@dataclass
class Env:
    engine: RagEngine
    settings: Settings
    files: Path
    guide_report: IngestReport | None = None

    def write(self, name: str, data: bytes) -> Path:
        path = self.files / name
        path.write_bytes(data)
        return path

    def ingest(self, collection: str, *files: tuple[str, bytes]) -> IngestReport:
        paths = [self.write(name, data) for name, data in files]
        return self.engine.ingest_paths(paths, collection=collection)

    @contextmanager
    def store(self) -> Iterator[DocumentStore]:
        store = DocumentStore(self.settings.documents_db)
        try:
            yield store
        finally:
            store.close()

    def faiss_ids(self, collection: str) -> list[int]:
        """The chunk ids in the collection's .faiss file on disk."""
        return FaissIndex(self.settings.index_dir, self.engine.embedder.dimension).ids(collection)

    def sqlite_ids(self, collection: str) -> list[int]:
        with self.store() as store:
            return store.chunk_ids(collection)

    def page_text(self, collection: str, name: str, page: int) -> str | None:
        with self.store() as store:
            return store.page_text(collection, name, page)


@pytest.fixture(scope="module")
def env(settings_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("engine")
    # The model's path (streaming, cancel, token limits); evidence-only answers have their own
    # module, test_rag_evidence_answers.
    settings = settings_factory(
        root / "data", ingest={"max_pages": 10}, generator={"answer_mode": "hybrid"}
    )
    engine = build_engine(settings)
    files = root / "files"
    files.mkdir()
    yield Env(engine, settings, files)
    engine.close()


@pytest.fixture(scope="module")
def guide(env: Env) -> Env:
    """The collection "guide" holding guide.pdf (three pages)."""
    env.guide_report = env.ingest("guide", ("guide.pdf", pdfs.make_pdf(GUIDE, title="Harbor")))
    return env


def cited_pages(answer: Answer) -> set[tuple[str, int]]:
    return {(c.document, c.page) for c in answer.citations}


def assert_quotes_on_stored_pages(env: Env, collection: str, answer: Answer) -> None:
    for citation in answer.citations:
        page = env.page_text(collection, citation.document, citation.page)
        assert page is not None
        assert normalize_for_match(citation.quote) in normalize_for_match(page)


def test_ingest_reports_pages_and_chunks(guide: Env) -> None:
    report = guide.guide_report
    assert report is not None
    assert [(o.name, o.status, o.pages) for o in report.outcomes] == [("guide.pdf", "added", 3)]
    assert report.chunks >= 3 and not report.failures
    (info,) = guide.engine.documents("guide")
    assert (info.name, info.pages, info.chunks) == ("guide.pdf", 3, report.chunks)
    assert guide.faiss_ids("guide") == guide.sqlite_ids("guide")
    assert len(guide.sqlite_ids("guide")) == report.chunks


def test_an_answer_on_page_two_is_cited_to_page_two(guide: Env) -> None:
    answer = guide.engine.answer(QUESTION, collection="guide")
    assert not answer.abstained
    assert "ninety minutes" in answer.text
    assert ("guide.pdf", 2) in cited_pages(answer)
    assert_quotes_on_stored_pages(guide, "guide", answer)
    assert answer.retrieved[0].page == 2
    assert answer.tokens > 0 and answer.timings.first_token is not None


def test_an_off_topic_question_abstains_without_the_model(guide: Env) -> None:
    events: list[AnswerProgress] = []
    answer = guide.engine.answer(OFF_TOPIC, collection="guide", on_progress=events.append)
    assert answer.abstained
    assert answer.text == "" and answer.citations == [] and answer.tokens == 0
    assert [e.stage for e in events] == ["searching"]
    closest = answer.closest_pages()
    assert closest and all(document == "guide.pdf" for document, _ in closest)
    assert all(p.dense_score < guide.settings.retrieval.min_dense_score for p in answer.retrieved)


def test_a_question_naming_what_the_documents_never_mention_abstains(guide: Env) -> None:
    # "Lisbon" is a common word to the embedder's vocabulary, so only the name rule catches it:
    # everything else in the question matches page two closely.
    answer = guide.engine.answer(
        "How often does the ferry to Marrow Island depart for Lisbon?", collection="guide"
    )
    assert answer.abstained
    assert answer.text == "" and answer.tokens == 0
    assert "lisbon" in answer.declined_because


def test_a_misspelt_word_is_read_as_the_word_the_documents_use(guide: Env) -> None:
    # Unread, "deaprt" is a name no page mentions, and the question would be declined.
    answer = guide.engine.answer("how often does the ferry to Marrow Island deaprt? i dont know",
                                 collection="guide")
    assert not answer.abstained, answer.declined_because
    assert "ninety minutes" in answer.text
    assert answer.evidence_match is not None and answer.evidence_match >= (
        guide.settings.retrieval.min_evidence_score)


def test_casual_words_no_document_uses_do_not_make_an_answerable_question_declined(
    guide: Env,
) -> None:
    # The asker's own wording ("gnarly", "timetabling", "honestly") is on no page: it neither
    # reads as an unknown name (they are everyday English) nor counts against the match.
    answer = guide.engine.answer(
        "honestly our crew's timetabling spreadsheet is gnarly and nobody trusts it, so how "
        "often does the ferry to Marrow Island depart?",
        collection="guide",
    )
    assert not answer.abstained, answer.text
    assert ("guide.pdf", 2) in cited_pages(answer)


_CITED_RUN = re.compile(r"(.+?)\[guide\.pdf p\.(\d)\]", re.DOTALL)


def assert_every_sentence_is_supported(env: Env, text: str) -> None:
    """Each run of text before a page mark says nothing that page does not say."""
    runs = _CITED_RUN.findall(text)
    assert runs and "".join(run for run, _ in runs).strip(), text
    for run, page in runs:
        stored = env.page_text("guide", "guide.pdf", int(page))
        assert stored is not None
        for sentence in split_sentences(run.strip(" -\n")):
            assert strictly_supported(sentence, stored), (sentence, page)


def test_the_documents_sentences_are_the_first_draft_and_every_draft_is_checked(
    guide: Env,
) -> None:
    events: list[AnswerProgress] = []
    answer = guide.engine.answer(QUESTION, collection="guide", on_progress=events.append)
    stages = [e.stage for e in events]
    assert stages[0] == "searching"
    assert stages[1:] == ["writing"] * (len(stages) - 1)
    # Before the model writes a word, the user sees the page's own sentence, cited.
    assert "ninety minutes" in events[1].partial_text
    assert "[guide.pdf p.2]" in events[1].partial_text
    partials = [e.partial_text for e in events[1:] if e.partial_text]
    for draft in partials:
        assert_every_sentence_is_supported(guide, draft)
    assert_every_sentence_is_supported(guide, answer.text)


def test_a_draft_never_shows_a_sentence_the_check_drops(guide: Env) -> None:
    reply = (
        "The ferry to Marrow Island departs every ninety minutes from Pier 7. "
        "It was built on the moon in 1850 by giants. "
        "Children under twelve travel free. The crossing takes forty"
    )
    scripted = build_engine(guide.settings, generator=lambda: ScriptedGenerator(reply))
    try:
        events: list[AnswerProgress] = []
        answer = scripted.answer(QUESTION, collection="guide", on_progress=events.append)
    finally:
        scripted.close()
    partials = [e.partial_text for e in events if e.partial_text]
    assert len(partials) >= 3  # the documents' draft, then one per finished sentence
    assert all("moon" not in draft and "1850" not in draft for draft in partials)
    assert "moon" not in answer.text and "Children under twelve travel free." in answer.text
    # A sentence shows once it is finished and checked, never while it is still growing.
    assert not any("forty" in draft and "forty minutes" not in draft for draft in partials)
    assert answer.text.startswith("The ferry to Marrow Island departs every ninety minutes")
    for draft in partials:
        assert_every_sentence_is_supported(guide, draft)


def test_cancel_raises_and_the_engine_still_answers_afterwards(guide: Env) -> None:
    with pytest.raises(GenerationCancelled):
        guide.engine.answer(QUESTION, collection="guide", cancelled=lambda: True)
    answer = guide.engine.answer(QUESTION, collection="guide", cancelled=lambda: False)
    assert ("guide.pdf", 2) in cited_pages(answer)


def test_ingesting_the_same_file_again_is_a_duplicate(guide: Env) -> None:
    before = guide.sqlite_ids("guide")
    again = guide.engine.ingest_paths([guide.files / "guide.pdf"], collection="guide")
    assert [(o.status, o.reason) for o in again.outcomes] == [("duplicate", "")]
    assert again.added == [] and again.chunks == 0
    copy = guide.engine.ingest_bytes(
        "copy.pdf", (guide.files / "guide.pdf").read_bytes(), collection="guide"
    )
    assert [(o.status, o.reason) for o in copy.outcomes] == [
        ("duplicate", "same content as guide.pdf")
    ]
    assert [d.name for d in guide.engine.documents("guide")] == ["guide.pdf"]
    assert guide.sqlite_ids("guide") == before == guide.faiss_ids("guide")


def test_two_copies_in_one_ingest_are_indexed_once(env: Env) -> None:
    data = pdfs.make_pdf(["The copy machine on deck two prints boarding passes for free."])
    report = env.ingest("copies", ("a.pdf", data), ("b.pdf", data))
    assert [o.status for o in report.outcomes] == ["added", "duplicate"]


def test_same_name_new_content_replaces_the_old_version(env: Env) -> None:
    old = env.ingest(
        "replace",
        (
            "fees.pdf",
            pdfs.make_pdf(["The harbour tax for visiting yachts is seventeen euros per night."]),
        ),
    )
    assert [o.status for o in old.outcomes] == ["added"]
    old_ids = env.sqlite_ids("replace")
    assert any(
        "seventeen" in p.text
        for p in env.engine.retrieve("harbour tax seventeen euros", collection="replace")
    )

    new = env.ingest(
        "replace",
        (
            "fees.pdf",
            pdfs.make_pdf(
                ["The harbour tax for visiting yachts is twenty-two euros per night from May."]
            ),
        ),
    )
    assert [o.status for o in new.outcomes] == ["replaced"]
    passages = env.engine.retrieve("harbour tax seventeen euros", collection="replace")
    assert passages and all("seventeen" not in p.text for p in passages)
    assert any("twenty-two" in p.text for p in passages)
    assert len(env.sqlite_ids("replace")) == len(old_ids)
    assert env.faiss_ids("replace") == env.sqlite_ids("replace")
    # SQLite may reuse the old chunk ids, so check that FAISS holds the new text's vector.
    embedder = env.engine.embedder
    query = embedder.embed_query("harbour tax seventeen euros")
    for p in passages:
        expected = float(embedder.embed_documents([p.text])[0] @ query)
        assert p.dense_score == pytest.approx(expected, abs=1e-4)
    assert [d.name for d in env.engine.documents("replace")] == ["fees.pdf"]
    assert "twenty-two" in (env.page_text("replace", "fees.pdf", 1) or "")


def test_forget_removes_a_document_from_sqlite_and_faiss(env: Env) -> None:
    env.ingest(
        "forget",
        ("keep.pdf", pdfs.make_pdf(["The harbour cafe serves fish soup every Friday at noon."])),
        ("drop.pdf", pdfs.make_pdf(["The lighthouse keeper Mr Albatross feeds seventeen gulls."])),
    )
    question = "Who feeds the gulls at the lighthouse?"
    assert env.engine.retrieve(question, collection="forget")[0].document == "drop.pdf"
    drop_ids = set(env.sqlite_ids("forget"))

    info = env.engine.forget("drop.pdf", collection="forget")
    assert info.name == "drop.pdf"
    assert [d.name for d in env.engine.documents("forget")] == ["keep.pdf"]
    assert all(p.document == "keep.pdf" for p in env.engine.retrieve(question, collection="forget"))
    remaining = env.sqlite_ids("forget")
    drop_ids -= set(remaining)
    assert drop_ids and not drop_ids & set(env.faiss_ids("forget"))
    assert env.faiss_ids("forget") == remaining
    assert env.page_text("forget", "drop.pdf", 1) is None
    with pytest.raises(NotFoundError, match=r"drop\.pdf"):
        env.engine.forget("drop.pdf", collection="forget")


def test_collections_never_leak(env: Env) -> None:
    secret = "The vault combination for the harbour safe is 4471 and Zebulon keeps the key."
    env.ingest("alpha", ("secret.pdf", pdfs.make_pdf([secret])))
    env.ingest(
        "beta",
        (
            "public.pdf",
            pdfs.make_pdf(
                ["The harbour safe is painted blue and stands in the office next to the map."]
            ),
        ),
    )
    question = "What is the vault combination for the harbour safe, and who keeps the key?"
    # Control: the secret is found in its own collection.
    assert any("4471" in p.text for p in env.engine.retrieve(question, collection="alpha"))

    passages = env.engine.retrieve(question, collection="beta", top_k=50)
    assert passages and all(p.document == "public.pdf" for p in passages)
    answer = env.engine.answer(question, collection="beta")
    assert "4471" not in answer.text and "Zebulon" not in answer.text
    assert all(c.document == "public.pdf" for c in answer.citations)
    assert all(p.document == "public.pdf" for p in answer.retrieved)


def test_bad_files_get_one_line_reasons_and_good_files_still_go_in(env: Env) -> None:
    good_one = pdfs.make_pdf(["The ticket office opens at seven and closes at nine."])
    good_two = pdfs.make_pdf(["The night boat carries cars and bicycles to the mainland."])
    files = [
        ("good-one.pdf", good_one),
        ("empty.pdf", pdfs.empty_bytes()),
        ("login.pdf", pdfs.html_named_pdf()),
        ("cut.pdf", pdfs.truncated_pdf()),
        ("garbage.pdf", pdfs.corrupt_xref_pdf()),
        ("locked.pdf", pdfs.encrypted_pdf(["A secret text that nobody can read."])),
        (
            "open.pdf",
            pdfs.encrypted_pdf(["Anyone may read this open encrypted page."], user_password=""),
        ),
        ("scan.pdf", pdfs.image_only_pdf()),
        ("huge.pdf", pdfs.many_pages_pdf(11)),
        ("good-two.pdf", good_two),
    ]
    paths = [env.write(name, data) for name, data in files]
    paths.insert(3, env.files / "missing.pdf")
    report = env.engine.ingest_paths(paths, collection="bad")

    outcomes = {o.name: o for o in report.outcomes}
    assert len(report.outcomes) == len(paths)
    expected_reasons = {
        "empty.pdf": "empty",
        "login.pdf": "not a PDF",
        "missing.pdf": "no such file",
        "cut.pdf": "broken or truncated",
        "garbage.pdf": "broken or truncated",
        "locked.pdf": "encrypted",
        "scan.pdf": "no text layer",
        "huge.pdf": "11 pages; the limit is 10",
    }
    for name, reason in expected_reasons.items():
        outcome = outcomes[name]
        assert outcome.status == "failed", name
        assert reason in outcome.reason, (name, outcome.reason)
        assert "\n" not in outcome.reason and len(outcome.reason) < 200
    for name in ("good-one.pdf", "open.pdf", "good-two.pdf"):
        assert outcomes[name].status == "added", (name, outcomes[name].reason)
    assert sorted(d.name for d in env.engine.documents("bad")) == [
        "good-one.pdf",
        "good-two.pdf",
        "open.pdf",
    ]
    assert env.faiss_ids("bad") == env.sqlite_ids("bad")
    assert len(env.sqlite_ids("bad")) == report.chunks == 3
    assert env.engine.retrieve("When does the night boat go?", collection="bad")


def test_a_deleted_faiss_file_is_rebuilt_and_answers_still_work(guide: Env) -> None:
    faiss_file = index_file(guide.settings.index_dir, "guide")
    assert faiss_file.exists()
    expected = guide.sqlite_ids("guide")
    faiss_file.unlink()
    restarted = build_engine(guide.settings)  # as after a restart
    try:
        assert restarted.check("guide") is True
        assert faiss_file.exists() and guide.faiss_ids("guide") == expected
        assert restarted.check("guide") is False
        answer = restarted.answer(QUESTION, collection="guide")
        assert ("guide.pdf", 2) in cited_pages(answer)
    finally:
        restarted.close()


def test_a_stray_id_in_the_faiss_file_is_removed_on_next_use(guide: Env) -> None:
    expected = guide.sqlite_ids("guide")
    dimension = guide.engine.embedder.dimension
    stray = FaissIndex(guide.settings.index_dir, dimension)
    stray.add("guide", [10_000_000], guide.engine.embedder.embed_documents([OFF_TOPIC]))
    assert 10_000_000 in guide.faiss_ids("guide")
    restarted = build_engine(guide.settings)
    try:
        passages = restarted.retrieve(OFF_TOPIC, collection="guide")  # no explicit check()
        assert passages and all(p.chunk_id in expected for p in passages)
        assert guide.faiss_ids("guide") == expected
    finally:
        restarted.close()


def test_an_answer_that_hits_the_token_limit_is_trimmed_and_marked(guide: Env) -> None:
    settings = guide.settings.model_copy(
        update={"generator": guide.settings.generator.model_copy(update={"max_answer_tokens": 20})}
    )
    short = build_engine(settings)
    try:
        answer = short.answer(QUESTION, collection="guide")
    finally:
        short.close()
    assert answer.tokens == 20
    assert answer.shortened
    assert not answer.abstained and answer.text
    # The model was cut mid-sentence (shortened); the answer keeps only complete sentences.
    for sentence in answer.text.split(" [guide.pdf p.2]"):
        assert not sentence.strip() or sentence.strip().endswith((".", "!", "?")), answer.text
    assert ("guide.pdf", 2) in cited_pages(answer)


@pytest.mark.parametrize(("evidence_passages", "several_pages"), [(3, True), (1, False)])
def test_sentences_are_chosen_from_more_passages_than_are_shown(
    settings_factory: Any, tmp_path: Path, evidence_passages: int, several_pages: bool
) -> None:
    # Limits wide enough to quote every page the evidence reaches: what it reaches is the point.
    settings = settings_factory(
        tmp_path / "data",
        retrieval={"top_k": 1, "evidence_passages": evidence_passages},
        answer={"page_margin": 5.0, "score_margin": 5.0, "sentences": 8, "redundancy": 1.0},
    )
    engine = build_engine(settings)
    try:
        source = tmp_path / "guide.pdf"
        source.write_bytes(pdfs.make_pdf(GUIDE, title="Harbor"))
        engine.ingest_paths([source], collection="guide")
        answer = engine.answer(QUESTION, collection="guide")
    finally:
        engine.close()
    assert not answer.abstained and len(answer.retrieved) == 1
    assert (len(cited_pages(answer)) > 1) is several_pages


SURVEY = [
    "The ferry to Marrow Island departs every ninety minutes from Pier 7. The crossing takes "
    "forty minutes in calm weather.",
    "Lost property is kept at the harbour office for thirty days. Passengers can collect items "
    "between nine and five on weekdays.",
    "Before counting, the survey comments were filtered by keywords about disruption. The "
    "filter kept only comments holding one of late, cancelled, rough sea or refund.",
]


def test_a_follow_up_says_what_the_previous_answer_did_not(
    settings_factory: Any, tmp_path: Path
) -> None:
    """"which terms exactly?" asks for more of the passage the previous answer quoted: the
    sentence already said is the closest to the conversation, and it is not said again."""
    engine = build_engine(settings_factory(tmp_path / "data"))
    try:
        source = tmp_path / "survey.pdf"
        source.write_bytes(pdfs.make_pdf(SURVEY, title="Survey"))
        engine.ingest_paths([source], collection="survey")
        previous = Turn("What happened to the survey comments?",
                        "Before counting, the survey comments were filtered by keywords about "
                        "disruption. [survey.pdf p.3]")
        answer = engine.answer("which terms exactly?", collection="survey", history=[previous])
    finally:
        engine.close()
    assert "rough sea" in answer.text
    assert "filtered by keywords" not in answer.text
    assert cited_pages(answer) == {("survey.pdf", 3)}


@pytest.mark.parametrize(("part_sentences", "both_parts"), [(3, True), (0, False)])
def test_each_part_of_a_two_part_question_is_answered_from_its_own_page(
    settings_factory: Any, tmp_path: Path, part_sentences: int, both_parts: bool
) -> None:
    """One page per answer keeps citations precise, but a question asking two things is often
    answered on two pages: the later part is answered on its own, from the page holding it."""
    engine = build_engine(settings_factory(tmp_path / "data",
                                           answer={"part_sentences": part_sentences}))
    try:
        source = tmp_path / "survey.pdf"
        source.write_bytes(pdfs.make_pdf(SURVEY, title="Survey"))
        engine.ingest_paths([source], collection="survey")
        answer = engine.answer("How often does the ferry to Marrow Island depart? And how long "
                               "is lost property kept at the harbour office?", collection="survey")
    finally:
        engine.close()
    assert not answer.abstained and "ninety minutes" in answer.text
    assert ("thirty days" in answer.text) is both_parts, answer.text
    assert (("survey.pdf", 2) in cited_pages(answer)) is both_parts
