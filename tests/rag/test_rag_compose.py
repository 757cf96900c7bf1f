"""Evidence-first answers, without models: which sentences an answer quotes, from which page,
in what shape, and the strict check every shown sentence must pass."""

from __future__ import annotations

import pytest

from rag.cite import content_words, ground_sentences, numbers_in, strictly_supported
from rag.compose import (
    CompositionLimits,
    QuestionKind,
    choose_evidence,
    compose,
    display_text,
    question_kind,
    render_parts,
)
from rag.extract import Evidence
from rag.types import Passage

PAGES = {
    ("manual.pdf", 4): "Press F5 to run the program. Press F7 to run one step at a time. "
    "The simulator stops at a breakpoint set with F9.",
    ("manual.pdf", 9): "The history of the simulator begins in 2006 at the university.",
    ("spec.pdf", 2): "Each interrupt source has a priority register at offset 0x000004.",
}


def passage(document: str, page: int, rank: int) -> Passage:
    return Passage(chunk_id=100 * page + rank, document=document, page=page,
                   text=PAGES[(document, page)], score=1.0 / (1 + rank), dense_score=0.6,
                   keyword_rank=None)


def item(sentence: str, document: str, page: int, score: float, rank: int = 0) -> Evidence:
    return Evidence(passage(document, page, rank), sentence, score)


def page_text(document: str, page: int) -> str | None:
    return PAGES.get((document, page))


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Which keys step through a program?", "list"),
        ("What are the main components of the controller?", "list"),
        ("List the steps to submit a claim", "list"),
        ("Why is the Settings menu disabled during a run?", "why"),
        ("How does the gateway claim an interrupt?", "why"),
        ("What is the purpose of the QASP?", "why"),
        ("What key runs the program?", "lookup"),
        ("When was the simulator first released?", "lookup"),
    ],
)
def test_question_kinds(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_the_answer_stays_on_the_best_page_and_leads_with_its_best_sentence() -> None:
    evidence = [
        item("Press F7 to run one step at a time.", "manual.pdf", 4, 1.5, rank=0),
        item("The history of the simulator begins in 2006 at the university.", "manual.pdf", 9,
             1.45, rank=3),
        item("Press F5 to run the program.", "manual.pdf", 4, 1.2, rank=0),
    ]
    chosen = choose_evidence(evidence, "lookup", CompositionLimits(page_margin=0.0))
    assert [(e.passage.page, e.sentence) for e in chosen] == [
        (4, "Press F7 to run one step at a time."), (4, "Press F5 to run the program.")
    ]
    # A wider page margin lets a nearly-as-good page in; the retrieval rank still counts.
    wider = choose_evidence(evidence, "lookup", CompositionLimits(page_margin=0.5))
    assert {e.passage.page for e in wider} == {4, 9}


def test_retrieval_rank_decides_between_pages_with_close_sentences() -> None:
    evidence = [
        item("The history of the simulator begins in 2006 at the university.", "manual.pdf", 9,
             1.50, rank=4),
        item("Press F7 to run one step at a time.", "manual.pdf", 4, 1.45, rank=0),
    ]
    lead = choose_evidence(evidence, "lookup", CompositionLimits(rank_weight=0.1))[0]
    assert lead.passage.page == 4  # 1.45 - 0 beats 1.50 - 0.4
    assert choose_evidence(evidence, "lookup", CompositionLimits(rank_weight=0.0))[0] \
        .passage.page == 9


def test_a_page_holding_more_of_the_question_or_found_more_often_is_preferred() -> None:
    evidence = [
        item("The history of the simulator begins in 2006 at the university.", "manual.pdf", 9,
             1.50, rank=0),
        item("Press F7 to run one step at a time.", "manual.pdf", 4, 1.40, rank=1),
    ]
    by_sentence = CompositionLimits(rank_weight=0.0, coverage_weight=0.0, passage_weight=0.0)
    assert choose_evidence(evidence, "lookup", by_sentence)[0].passage.page == 9
    # Page 4's passage holds every word of "breakpoint program step", page 9's none of them.
    words = content_words("breakpoint program step")
    by_coverage = CompositionLimits(rank_weight=0.0, coverage_weight=0.5, passage_weight=0.0)
    assert choose_evidence(evidence, "lookup", by_coverage, words)[0].passage.page == 4
    assert choose_evidence(evidence, "lookup", by_coverage)[0].passage.page == 9
    # Two retrieved passages of page 4 against one of page 9.
    twice = [*evidence, item("Press F5 to run the program.", "manual.pdf", 4, 1.0, rank=2)]
    by_passages = CompositionLimits(rank_weight=0.0, coverage_weight=0.0, passage_weight=0.2)
    assert choose_evidence(twice, "lookup", by_passages)[0].passage.page == 4
    assert choose_evidence(evidence, "lookup", by_passages)[0].passage.page == 9


def test_near_repeats_and_weak_sentences_are_left_out_and_the_count_is_capped() -> None:
    evidence = [
        item("Press F7 to run one step at a time.", "manual.pdf", 4, 1.5),
        item("Press F7 to run one step at a time now.", "manual.pdf", 4, 1.4),
        item("Press F5 to run the program.", "manual.pdf", 4, 1.3),
        item("The simulator stops at a breakpoint set with F9.", "manual.pdf", 4, 0.2),
    ]
    limits = CompositionLimits(score_margin=0.5, redundancy=0.6, sentences=3)
    assert [e.sentence for e in choose_evidence(evidence, "lookup", limits)] == [
        "Press F7 to run one step at a time.", "Press F5 to run the program."
    ]
    assert len(choose_evidence(evidence, "lookup", CompositionLimits(
        score_margin=2.0, redundancy=1.0, sentences=1))) == 1


def test_a_sentence_that_refers_back_brings_the_statement_before_it() -> None:
    reason = "The jump happens in the decode stage, so the next fetch is wasted."
    effect = "In this case, two instructions are removed from the pipeline."
    plain = "Two counters are shown in the statistics window."
    chosen = choose_evidence([Evidence(passage("manual.pdf", 4, 0), effect, 1.5, before=reason),
                              Evidence(passage("manual.pdf", 4, 1), plain, 1.4, before=effect)],
                             "why", CompositionLimits(score_margin=1.0))
    assert [e.sentence for e in chosen] == [reason, effect, plain]
    # The statement before it is not added twice when it is itself chosen.
    both = choose_evidence([Evidence(passage("manual.pdf", 4, 0), reason, 1.6),
                            Evidence(passage("manual.pdf", 4, 1), effect, 1.5, before=reason)],
                           "why", CompositionLimits(score_margin=1.0, redundancy=1.0))
    assert [e.sentence for e in both] == [reason, effect]


def test_a_list_answer_has_one_item_per_line_each_with_its_page() -> None:
    evidence = [
        item("Press F5 to run the program.", "manual.pdf", 4, 1.5),
        item("Press F7 to run one step at a time.", "manual.pdf", 4, 1.4),
        item("The simulator stops at a breakpoint set with F9.", "manual.pdf", 4, 1.3),
    ]
    question = "Which keys control a run?"
    parts = compose(question, evidence, page_text, CompositionLimits())
    assert render_parts(question, parts).splitlines() == [
        "- Press F5 to run the program. [manual.pdf p.4]",
        "- Press F7 to run one step at a time. [manual.pdf p.4]",
        "- The simulator stops at a breakpoint set with F9. [manual.pdf p.4]",
    ]
    lookup = render_parts("What key runs the program?", parts[:1])
    assert lookup == "Press F5 to run the program. [manual.pdf p.4]"
    # In prose, one mark closes the sentences taken from the same page.
    assert render_parts("What keys run the program?", parts[:2]) == (
        "Press F5 to run the program. Press F7 to run one step at a time. [manual.pdf p.4]"
    )


def test_a_sentence_whose_quote_is_not_on_the_stored_page_is_not_used() -> None:
    invented = item("Press F2 to format the disk.", "manual.pdf", 4, 2.0)
    real = item("Press F5 to run the program.", "manual.pdf", 4, 1.5)
    parts = compose("What key runs the program?", [invented, real], page_text,
                    CompositionLimits())
    assert [p.text for p in parts] == ["Press F5 to run the program."]
    assert parts[0].citation.quote and parts[0].citation.page == 4


def test_display_text_drops_markup_and_bracketed_reference_numbers() -> None:
    assert display_text("Use <pre>1024</pre> bytes as shown in [12] and [3, 4].") == \
        "Use 1024 bytes as shown in and."
    assert display_text("No markup here.") == "No markup here."


@pytest.mark.parametrize(
    ("sentence", "shown"),
    [
        ("Serious illness of the member. b.", "Serious illness of the member."),
        ("Excess requires approval of the team. i.", "Excess requires approval of the team."),
        ("The form is signed. iv.", "The form is signed."),
        ("Weight tickets are required: (2)", "Weight tickets are required:"),
        ("The limit is 5.", "The limit is 5."),  # a number is a fact, not an enumerator
        ("Use vitamin c.", "Use vitamin c."),  # a letter inside the sentence stays
    ],
)
def test_the_next_items_enumerator_is_not_shown(sentence: str, shown: str) -> None:
    assert display_text(sentence) == shown


def test_strict_support_needs_every_content_word_and_number() -> None:
    source = "Each interrupt source has a priority register at offset 0x000004; 1,188 sources."
    assert strictly_supported("Each interrupt source has a priority register.", source)
    assert strictly_supported("There are 1188 sources.", source)
    assert not strictly_supported("Each interrupt source has a priority of 7.", source)
    assert not strictly_supported("The priority register was designed at Manchester.", source)
    assert not strictly_supported("There are 1189 sources.", source)
    assert strictly_supported("Each source has a priority register [spec.pdf p.2].", source)
    assert numbers_in("1,188 and 2.5") == {"1188", "2.5"}


def test_strict_grounding_cites_only_a_passage_that_says_all_of_the_sentence() -> None:
    passages = [passage("spec.pdf", 2, 0), passage("manual.pdf", 4, 1)]
    loose = ground_sentences("Each interrupt source has a priority register in 2006.", passages,
                             page_text, min_support=0.5)
    strict = ground_sentences("Each interrupt source has a priority register in 2006.", passages,
                              page_text, strict=True)
    assert loose[0].citation is not None  # most of it is on the page...
    assert strict[0].citation is None  # ...but not the year, so it is not shown
    kept = ground_sentences("Press F5 to run the program.", passages, page_text, strict=True)
    assert kept[0].citation is not None and kept[0].citation.page == 4


def test_a_models_numbered_list_becomes_sentences_not_fragments() -> None:
    from rag.checked_writing import as_sentences

    assert as_sentences("1. Graph anonymization\n2) Author identification\n- Location privacy.") \
        == "Graph anonymization. Author identification. Location privacy."
    assert as_sentences("1. Graph anonymization\n2. Author identifi") == \
        "Graph anonymization. Author identifi"  # a cut-off last line stays cut, to be trimmed
    assert as_sentences("One sentence. Another one!\n\n") == "One sentence. Another one!"


def _from(text: str, sentence: str, score: float, page: int = 45) -> Evidence:
    return Evidence(Passage(chunk_id=page, document="handbook.pdf", page=page, text=text,
                            score=1.0, dense_score=0.6, keyword_rank=None), sentence, score)


STORAGE = ("The second 90 days of storage may be approved only for: a. Illness of the member. "
           "b. Serious illness or death of a dependent of the member. c. Directed travel after "
           "arrival at the new duty station. d. Awaiting completion of a residence under "
           "construction. Storage beyond that needs approval from headquarters.")


def test_a_lead_in_brings_the_items_it_announces() -> None:
    lead_in = "The second 90 days of storage may be approved only for: a. Illness of the member."
    chosen = choose_evidence([_from(STORAGE, lead_in, 1.9)], "list",
                             CompositionLimits(list_items=4))
    assert [e.sentence for e in chosen] == [
        lead_in,
        "b. Serious illness or death of a dependent of the member.",
        "c. Directed travel after arrival at the new duty station.",
        "d. Awaiting completion of a residence under construction.",
    ]  # and not the unnumbered statement after the list
    # A list's items are capped at twice `list_items` (one list, not separate sentences).
    assert len(choose_evidence([_from(STORAGE, lead_in, 1.9)], "list",
                               CompositionLimits(list_items=1))) == 3


def test_items_announced_as_below_come_but_an_amount_below_announces_nothing() -> None:
    text = ("Claims suspected of fraud are handled by one of the processes below. (1) A claim "
            "of $5,000 or more goes to the investigators. (2) A smaller claim goes to the "
            "commanding officer. The audit team keeps a record.")
    lead_in = "Claims suspected of fraud are handled by one of the processes below."
    assert [e.sentence[:3] for e in choose_evidence(
        [_from(text, lead_in, 1.9)], "lookup", CompositionLimits())] == ["Cla", "(1)", "(2)"]
    text = ("Claims below $5,000 go to the commanding officer. (1) The officer reviews them. "
            "(2) The officer decides.")
    amount = "Claims below $5,000 go to the commanding officer."
    assert [e.sentence for e in choose_evidence(
        [_from(text, amount, 1.9)], "lookup", CompositionLimits())] == [amount]


def test_a_bulleted_list_run_into_sentences_comes_whole_after_its_lead_in() -> None:
    # Text extraction leaves the bullets inside the sentences: no capital follows "wrong."
    text = ("There are 4 build states shown on the page: • Failed (F): The build went wrong. "
            "• Cancelled (X): The build was stopped. These are rare. • Waiting (M): The build "
            "waits on another package. • Uploaded (U): The package is in the archive. "
            "Other causes of a failure are listed later.")
    lead_in = ("There are 4 build states shown on the page: • Failed (F): The build went "
               "wrong. • Cancelled (X): The build was stopped.")
    chosen = choose_evidence([_from(text, lead_in, 1.9)], "lookup", CompositionLimits())
    assert [e.sentence for e in chosen] == [
        lead_in, "These are rare. • Waiting (M): The build waits on another package. "
        "• Uploaded (U): The package is in the archive."]  # not the statement after the list


def test_a_lead_in_followed_by_a_table_brings_the_table_but_a_pointer_does_not() -> None:
    table = ("Directory Description bin Essential command binaries boot Static files of the "
             "boot loader media Mount point for removable media srv Data for services.")
    text = f"The following directories are required in the root. {table} Distributions add none."
    lead_in = "The following directories are required in the root."
    assert [e.sentence for e in choose_evidence(
        [_from(text, lead_in, 1.9)], "list", CompositionLimits())] == [lead_in, table]
    pointer = "The format of these files is explained in the following sections."
    text = f"{pointer} This step serves several purposes for every application."
    assert [e.sentence for e in choose_evidence(
        [_from(text, pointer, 1.9)], "lookup", CompositionLimits())] == [pointer]


def test_an_item_that_runs_on_keeps_its_sentences_when_the_numbering_goes_on() -> None:
    text = ("Fraud is handled by the processes below. (1) A large claim goes to the "
            "investigators. A record of the referral is kept. (2) A small claim goes to the "
            "commanding officer.")
    lead_in = "Fraud is handled by the processes below."
    weaker = ["Auditors work from the regional office.", "Every move is reviewed twice.",
              "Members may appeal within a year."]
    evidence = [_from(text, lead_in, 1.9), *(_from(" ".join(weaker), w, 1.5) for w in weaker)]
    chosen = choose_evidence(evidence, "lookup", CompositionLimits(sentences=4))
    # The two items take the places of two weaker sentences; the run-on sentence takes none.
    assert [e.sentence[:12] for e in chosen] == [
        lead_in[:12], "(1) A large ", "A record of ", "(2) A small ", "Auditors wor"]
    # Without a next item the unnumbered sentence ends the list and is not quoted as part of it.
    text = ("Fraud is handled by the processes below. (1) A large claim goes to the "
            "investigators. A record of the referral is kept. Appeals go to the board.")
    assert [e.sentence[:12] for e in choose_evidence(
        [_from(text, lead_in, 1.9)], "lookup", CompositionLimits())] == [
        lead_in[:12], "(1) A large "]


def test_a_count_brings_the_ordinal_sentences_that_start_at_the_first() -> None:
    text = ("Machanavajjhala et al. introduce two simple attacks which defeat k-anonymity. The "
            "first attack is the homogeneity attack, where values in a class lack diversity. "
            "In the second attack the adversary uses background knowledge about a user. "
            "Differential privacy was proposed later.")
    announced = "Machanavajjhala et al. introduce two simple attacks which defeat k-anonymity."
    chosen = choose_evidence([_from(text, announced, 2.3)], "list", CompositionLimits())
    assert [e.sentence.split()[:3] for e in chosen] == [
        ["Machanavajjhala", "et", "al."], ["The", "first", "attack"], ["In", "the", "second"]]
    # A number in passing is no announcement: "two annotators" is followed by a later phase.
    text = ("Posts are labelled by at least two annotators in this phase. In the third phase a "
            "model is fine-tuned on them.")
    passing = "Posts are labelled by at least two annotators in this phase."
    assert [e.sentence for e in choose_evidence([_from(text, passing, 1.5)], "lookup",
                                                CompositionLimits())] == [passing]


def test_parallel_items_of_one_list_are_not_near_repeats() -> None:
    text = ("A. Under the licence: each contributor grants a royalty-free licence to: 1. Use "
            "2. Copy B. Under the patents: each contributor grants a royalty-free licence to: "
            "1. Use 2. Sell")
    first = "A. Under the licence: each contributor grants a royalty-free licence to: 1. Use 2. Copy"
    second = "B. Under the patents: each contributor grants a royalty-free licence to: 1. Use 2. Sell"
    unnumbered = "Under the patents: each contributor grants a royalty-free licence to use and sell"
    limits = CompositionLimits(redundancy=0.6)
    assert [e.sentence for e in choose_evidence(
        [_from(text, first, 1.6), _from(text, second, 1.5)], "list", limits)] == [first, second]
    # The same overlap without the list's enumerators is a near-repeat.
    text = f"{first} {unnumbered}."
    assert [e.sentence for e in choose_evidence(
        [_from(text, first, 1.6), _from(text, unnumbered, 1.5)], "list", limits)] == [first]


def test_a_passage_that_opens_inside_a_sentence_is_quoted_from_the_sentence_start() -> None:
    stored = {("handbook.pdf", 24): "Retention. Records of every move will be retained for a "
              "period of 10 years. This includes bills of lading and invoices."}
    # The chunk starts inside the first sentence; its tail and the whole sentence are one quote.
    chunk = "be retained for a period of 10 years. This includes bills of lading and invoices."
    evidence = [_from(chunk, "be retained for a period of 10 years.", 1.5, page=24),
                _from(chunk, "This includes bills of lading and invoices.", 1.4, page=24)]
    parts = compose("How long are records kept?", evidence,
                    lambda document, page: stored.get((document, page)), CompositionLimits())
    assert [p.text for p in parts] == [
        "Records of every move will be retained for a period of 10 years.",
        "This includes bills of lading and invoices.",
    ]
    assert parts[0].citation.quote.startswith("Records of every move")


def test_announced_items_come_from_the_page_and_take_the_places_of_weaker_sentences() -> None:
    announced = "Two attacks defeat k-anonymity."
    first = "The first attack is the homogeneity attack."
    second = "In the second attack the adversary knows the background."
    page = f"{announced} {first} {second} Later work proposed l-diversity."
    stored = {("survey.pdf", 4): page}
    # The passage (a chunk) ends before the second attack; the page holds it.
    chunk = f"{announced} {first}"
    weaker = ["Anonymity is studied widely in surveys.", "Privacy matters to users online."]
    evidence = [Evidence(Passage(chunk_id=1, document="survey.pdf", page=4, text=chunk,
                                 score=1.0, dense_score=0.6, keyword_rank=None), announced, 2.0),
                *(Evidence(Passage(chunk_id=2, document="survey.pdf", page=4, text=" ".join(weaker),
                                   score=0.5, dense_score=0.5, keyword_rank=None), text, 1.9)
                  for text in weaker)]
    chosen = choose_evidence(evidence, "list", CompositionLimits(list_items=4),
                             page_text=lambda document, number: stored.get((document, number)))
    assert [e.sentence for e in chosen] == [announced, first, second]
    # Without the page, only the passage's items are known, and one weaker sentence keeps its place.
    from_passage = choose_evidence(evidence, "list", CompositionLimits(list_items=4))
    assert [e.sentence for e in from_passage] == [announced, first, weaker[0]]


def test_a_sentence_restating_the_previous_answer_does_not_push_out_the_new_fact() -> None:
    """In a follow-up, closeness to the previous answer is part of each sentence's score; the
    margin that decides which sentences join the lead is measured on the question alone."""
    restating = Evidence(passage("manual.pdf", 4, 0), "Press F5 to run the program.", 1.0 + 0.6,
                         context=1.0)
    new_fact = Evidence(passage("manual.pdf", 4, 1), "Press F7 to run one step at a time.", 0.9,
                        context=0.0)
    limits = CompositionLimits(score_margin=0.5)
    follow_up = choose_evidence([restating, new_fact], "lookup", limits, context_weight=0.6)
    assert [e.sentence for e in follow_up] == [restating.sentence, new_fact.sentence]
    # Scored by the totals, the restatement's closeness would have kept the fact out.
    plain = choose_evidence([restating, new_fact], "lookup", limits)
    assert [e.sentence for e in plain] == [restating.sentence]


def test_statements_between_two_chosen_ones_on_a_page_are_quoted_as_one_run() -> None:
    steps = ["The jar runs as an application or as an applet.",
             "Both ways need the Java runtime environment, version 5 or later.",
             "Run it with java -jar and the name of the file.",
             "Some systems also start it with a double click.",
             "The applet is meant for developers only.",
             "Headings help.",
             "The applet needs a browser with a Java plug-in."]
    page = " ".join(steps)

    def choose(*picks: tuple[int, float]) -> list[str]:
        evidence = [Evidence(Passage(1, "manual.pdf", 24, page, 1.0, 0.6, None), steps[i], score)
                    for i, score in picks]
        return [e.sentence for e in choose_evidence(
            evidence, "lookup", CompositionLimits(score_margin=2.0, sentences=2),
            page_text=lambda document, number: page)]

    # The better one's place, in reading order, the statement between included; the run takes
    # no one's place (two sentences asked for, three quoted).
    assert choose((2, 1.5), (0, 1.0)) == steps[0:3]
    assert choose((0, 1.5), (3, 1.0)) == steps[0:4]  # two statements between
    assert choose((0, 1.5), (4, 1.0)) == [steps[0], steps[4]]  # three: two separate places
    # A heading or a fragment between them is not a statement worth quoting.
    assert choose((4, 1.5), (6, 1.0)) == [steps[4], steps[6]]


def test_a_run_goes_on_through_every_chosen_statement_close_to_the_last() -> None:
    steps = ["2.4 Conductivity of water Objective Measure the resistance of tap water.",
             "We have used normal tap water from the lab.",
             "The DC and AC resistances seem to be very different.",
             "With DC, the resistance changes with time, due to electrolysis and bubbles.",
             "The area of the electrodes has some effect on the reading.",
             "The resistance depends on the ions and impurities in the water."]
    page = " ".join(steps)
    evidence = [Evidence(Passage(1, "manual.pdf", 23, page, 1.0, 0.6, None), steps[i], score)
                for i, score in ((0, 1.5), (2, 1.2), (5, 1.0))]
    chosen = choose_evidence(evidence, "lookup", CompositionLimits(score_margin=2.0, sentences=3),
                             page_text=lambda document, number: page)
    # One run from the heading to the last chosen statement: the reason between is quoted.
    assert [e.sentence for e in chosen] == steps


def test_a_statement_cut_at_the_word_limit_is_followed_by_its_next_piece() -> None:
    from rag.extract import MAX_SENTENCE_WORDS

    files = [f"• /file{n} (maps names to types)" for n in range(40)]
    bullets = "The files created are " + " ".join(files)  # no lead-in: see the bullets' test
    page = f"{bullets}. Applications must rerun the tool after installing."
    pieces = [" ".join(bullets.split()[i:i + MAX_SENTENCE_WORDS])
              for i in range(0, len(bullets.split()), MAX_SENTENCE_WORDS)]
    evidence = [Evidence(Passage(1, "spec.pdf", 3, page, 1.0, 0.6, None), pieces[0], 1.5)]
    chosen = choose_evidence(evidence, "lookup", CompositionLimits(),
                             page_text=lambda document, number: page)
    assert [e.sentence for e in chosen] == pieces[:2]
    # A statement within the limit brings nothing.
    short = [Evidence(Passage(1, "spec.pdf", 3, page, 1.0, 0.6, None),
                      "Applications must rerun the tool after installing.", 1.5)]
    assert len(choose_evidence(short, "lookup", CompositionLimits(),
                               page_text=lambda document, number: page)) == 1


def test_the_lead_of_a_why_or_list_answer_brings_the_statement_after_it() -> None:
    steps = ["When a PDF is ingested, its text is extracted and split into chunks.",
             "Each chunk is turned into a vector and stored in the index.",
             "A question is searched by meaning and by keywords."]
    page = " ".join(steps)
    lead = [Evidence(Passage(1, "guide.pdf", 5, page, 1.0, 0.6, None), steps[0], 1.5)]

    def answer(kind: QuestionKind) -> list[str]:
        return [e.sentence for e in choose_evidence(
            lead, kind, CompositionLimits(), page_text=lambda document, number: page)]

    assert answer("why") == steps[:2]
    assert answer("list") == steps[:2]
    assert answer("lookup") == steps[:1]  # a lookup's fact is in its best sentence
