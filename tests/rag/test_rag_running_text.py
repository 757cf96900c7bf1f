"""Running headers and footers are left out of what an answer quotes, and only they."""

from __future__ import annotations

from rag.running_text import RunningText, running_edges

HEADER = "Simulator Manual, Release 0.5.3"
PAGES = {
    page: f"{HEADER} {body} {page} Chapter 2. The user interface"
    for page, body in {
        3: "Press F5 to run the program.",
        4: "happening during the simulation. Press F7 to step.",
        5: "The history window lists each cycle.",
        6: "Breakpoints are set with F9.",
        7: "The cache window shows hits and misses.",
    }.items()
}


def page_text(document: str, page: int) -> str | None:
    return PAGES.get(page) if document == "manual.pdf" else None


def test_words_a_page_shares_with_two_neighbours_at_its_edges_are_running() -> None:
    head, tail = running_edges(PAGES[5], [PAGES[3], PAGES[4], PAGES[6], PAGES[7]])
    assert head == 4  # "Simulator Manual, Release 0.5.3"
    assert tail == 6  # "5 Chapter 2. The user interface", the page number masked


def test_one_neighbour_alike_is_chance_not_a_running_header() -> None:
    page = "The cache window shows hits and misses for each level."
    alike = "The cache window has two tabs."
    other = "Breakpoints are set with F9."
    assert running_edges(page, [alike, other, other]) == (0, 0)
    assert running_edges(page, [alike, alike, other]) == (3, 0)


def test_quotes_lose_the_running_words_and_keep_the_body() -> None:
    running = RunningText(page_text)
    assert running.strip(f"{HEADER} Press F5 to run the program.", "manual.pdf", 3) == (
        "Press F5 to run the program.")
    assert running.strip("Breakpoints are set with F9. 6 Chapter 2. The user interface",
                         "manual.pdf", 6) == "Breakpoints are set with F9."
    # A statement from the middle of the page is untouched, and so is a document of few pages.
    assert running.strip("Press F7 to step.", "manual.pdf", 4) == "Press F7 to step."
    assert running.strip(f"{HEADER} Intro.", "other.pdf", 1) == f"{HEADER} Intro."
