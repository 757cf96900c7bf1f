"""Page-aware chunking: one page per chunk, sizes near the target, overlap, nothing lost."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from rag.chunk import chunk_document, chunk_page, split_sentences
from rag.parse import PageText

TARGET = 40
OVERLAP = 8


def page(text: str, number: int = 1) -> PageText:
    return PageText(number=number, text=text, has_text=len(text) >= 20)


def sentences(count: int, words: int = 8, prefix: str = "s") -> str:
    """`count` sentences of `words` distinct words each, e.g. "S0w0 s0w1 ... s0w7."."""
    out = []
    for i in range(count):
        body = " ".join(f"{prefix}{i}w{j}" for j in range(words))
        out.append(body[0].upper() + body[1:] + ".")
    return " ".join(out)


def is_subsequence(needle: list[str], haystack: list[str]) -> bool:
    remaining = iter(haystack)
    return all(word in remaining for word in needle)


def test_split_sentences_on_end_punctuation_and_paragraphs() -> None:
    text = "It works. Does it? Yes! 42 is a number. [1] A reference.\n\nNew paragraph"
    assert split_sentences(text) == [
        "It works.",
        "Does it?",
        "Yes!",
        "42 is a number.",
        "[1] A reference.",
        "New paragraph",
    ]


def test_split_sentences_keeps_closing_quotes_and_brackets() -> None:
    text = 'He said "Stop." Then he left (quietly.) The end.'
    assert split_sentences(text) == ['He said "Stop."', "Then he left (quietly.)", "The end."]
    chunk_words = " ".join(chunk_page(page(text), TARGET, OVERLAP)).split()
    assert chunk_words == text.split()


def test_split_sentences_keeps_abbreviations_before_lower_case() -> None:
    text = "Results by Smith et al. show gains, e.g. on speed. Next one."
    assert split_sentences(text) == [
        "Results by Smith et al. show gains, e.g. on speed.",
        "Next one.",
    ]


def test_every_chunk_lies_on_one_page_and_chunks_are_numbered_in_order() -> None:
    pages = [
        page(sentences(12, prefix="a"), 1),
        page("tiny", 2),  # no text layer: no chunks
        page(sentences(3, prefix="c"), 3),
    ]
    chunks = chunk_document(pages, TARGET, OVERLAP)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 3}
    for chunk in chunks:
        prefix = {1: "a", 3: "c"}[chunk.page]
        assert all(word.lower().startswith(prefix) for word in chunk.text.split())


def test_chunk_sizes_are_near_the_target() -> None:
    chunks = chunk_page(page(sentences(30)), TARGET, OVERLAP)
    sizes = [len(c.split()) for c in chunks]
    assert len(chunks) >= 6
    # Whole 8-word sentences are packed up to the target; only the last may absorb a short tail.
    assert all(TARGET - 8 < size <= TARGET for size in sizes[:-1]), sizes
    assert TARGET // 3 <= sizes[-1] <= TARGET + TARGET // 3, sizes


def test_consecutive_chunks_overlap_by_the_overlap_words() -> None:
    chunks = [c.split() for c in chunk_page(page(sentences(30)), TARGET, OVERLAP)]
    for previous, current in pairwise(chunks):
        assert current[:OVERLAP] == previous[-OVERLAP:]


def test_no_overlap_when_overlap_is_zero() -> None:
    chunks = [c.split() for c in chunk_page(page(sentences(30)), TARGET, 0)]
    words = [w for c in chunks for w in c]
    assert words == sentences(30).split()
    assert len(words) == len(set(words))


def test_no_empty_chunks_and_a_short_page_is_one_chunk() -> None:
    assert chunk_page(page("Just one short sentence here."), TARGET, OVERLAP) == [
        "Just one short sentence here."
    ]
    assert chunk_page(PageText(1, "", has_text=False), TARGET, OVERLAP) == []
    assert chunk_page(PageText(1, "   \n\n  ", has_text=True), TARGET, OVERLAP) == []


def test_a_page_without_text_layer_gives_no_chunks() -> None:
    assert chunk_page(PageText(1, "Figure 1", has_text=False), TARGET, OVERLAP) == []


def test_a_sentence_longer_than_the_target_is_split() -> None:
    long_sentence = " ".join(f"cell{i}" for i in range(3 * TARGET + 5)) + "."
    chunks = chunk_page(page(long_sentence), TARGET, OVERLAP)
    assert len(chunks) >= 3
    assert all(len(c.split()) <= TARGET + OVERLAP + TARGET // 3 for c in chunks)
    assert is_subsequence(long_sentence.split(), [w for c in chunks for w in c.split()])


def test_a_short_tail_is_merged_into_the_previous_chunk() -> None:
    text = sentences(5) + " Tail end."  # 40 words, then a 2-word tail
    chunks = chunk_page(page(text), TARGET, OVERLAP)
    assert len(chunks) == 1
    assert chunks[0].endswith("Tail end.")


_word = st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)
_sentence = st.lists(_word, min_size=1, max_size=70).map(lambda ws: " ".join(ws) + ".")
_paragraph = st.lists(_sentence, min_size=1, max_size=8).map(" ".join)
_page_text = st.lists(_paragraph, min_size=1, max_size=4).map("\n\n".join)


@settings(max_examples=100, deadline=None)
@given(
    text=_page_text,
    target=st.integers(min_value=20, max_value=120),
    overlap=st.integers(min_value=0, max_value=40),
)
def test_chunks_cover_every_word_of_the_page_in_order(text: str, target: int, overlap: int) -> None:
    chunks = chunk_page(PageText(1, text, has_text=True), target, overlap)
    page_words = text.split()
    chunk_words = [w for c in chunks for w in c.split()]
    assert chunks and all(c.strip() for c in chunks)
    assert is_subsequence(page_words, chunk_words)
    # Every chunk starts with words carried from the previous one (at most the overlap), and the
    # rest are new: dropping the carried words gives back exactly the page.
    effective = min(overlap, target // 2)
    rebuilt = chunks[0].split()
    for previous, current in pairwise(chunks):
        carried = min(effective, len(previous.split()))
        assert current.split()[:carried] == previous.split()[-carried:] if carried else True
        rebuilt += current.split()[carried:]
    assert rebuilt == page_words
    assert all(len(c.split()) <= target + effective + target // 3 for c in chunks)
