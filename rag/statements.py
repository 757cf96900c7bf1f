"""Statements: the units an evidence answer quotes, cut from a passage's text.

Sentence splitting alone cuts a numbered list into pieces that each carry the next item's
number ("...the following activities: 1." / "Use 2." / "Distribution 3."), so the item that
answers a question is never a candidate, and the lead-in sentence is quoted without its list.
So an enumerator goes with the item it opens, short enumerated items join the lead-in that
introduces them with a colon, and an over-long "sentence" (a table strung together by text
extraction) is cut into pieces instead of losing its tail.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rag.chunk import split_sentences
from rag.normalize import normalize_for_match

# An enumerator ("1.", "b.", "B.", "(2)") at the end or the start of a sentence.
_TRAILING_ENUMERATOR = re.compile(r"\s+(\(?(?:\d{1,2}|[A-Za-z])[.)])$")
_LEADING_ENUMERATOR = re.compile(r"^(\(?(?:\d{1,2}|[A-Za-z])[.)])\s")
# Abbreviations that end no sentence, whatever follows them ("(e.g. "application-x-generic")").
_ABBREVIATION = re.compile(r"(?:^|[\s(])(?:e\.g|i\.e|cf|vs)\.$", re.IGNORECASE)
_LONE_ENUMERATOR = re.compile(r"^\(?(?:\d{1,2}|[A-Za-z])[.)]$")
# Authors cited by name: "et al." ends no sentence when a reference number follows it.
_ET_AL = re.compile(r"\bet al\.$")
# A given name and a middle initial ("Guillaume P."): the sentence goes on with the surname.
_MIDDLE_INITIAL = re.compile(r"(?:^|\s)[A-Z][a-z]+ [A-Z]\.$")
_SURNAME = re.compile(r"^[A-Z][a-z]")
_OPENING_REFERENCE = re.compile(r"\[\d+(?:\s*[,–-]\s*\d+)*\]")
# A bullet ("• ", "– ") opening a list item: items in a bulleted list follow one another
# whatever they say, like numbers that count up.
_BULLET = re.compile(r"^[•◦▪‣●■–*-]\s")
BULLET_STYLE = "bullet"
# An enumerated item this short is a list entry ("2. Distribution"), not a statement of its own.
LIST_ITEM_WORDS = 6


def split_statements(text: str, max_words: int | None = None) -> list[str]:
    """The passage's statements in reading order (see the module docstring), none longer than
    `max_words` words if that is given."""
    sentences = _join_after_names(split_sentences(text))
    statements = _join_list_items(_join_initials(_move_enumerators(sentences)))
    if max_words is None:
        return statements
    pieces = []
    for statement in statements:
        words = statement.split()
        for start in range(0, len(words), max_words):
            pieces.append(" ".join(words[start : start + max_words]))
    return pieces


def _join_after_names(sentences: list[str]) -> list[str]:
    """A sentence split after "et al." before a reference number ("Kamble et al. [59]
    implemented ...") joined again: the split would leave a subjectless "[59] implemented ...".
    So is one split after "e.g.", "i.e.", "cf." or "vs." (an example is no new sentence)."""
    return _rejoined(sentences, lambda previous, sentence: bool(
        _ABBREVIATION.search(previous)
        or (_ET_AL.search(previous) and _OPENING_REFERENCE.match(sentence))))


def _join_initials(sentences: list[str]) -> list[str]:
    """A sentence split after a middle initial ("... contact: Guillaume P." / "Brat 1.
    Definitions") joined again, so the name is quoted whole. Runs after the enumerators have
    moved: an initial still at a sentence's end numbers no item."""
    return _rejoined(sentences, lambda previous, sentence: bool(
        _MIDDLE_INITIAL.search(previous) and _SURNAME.match(sentence)))


def _rejoined(sentences: list[str], goes_on: Callable[[str, str], bool]) -> list[str]:
    """Each sentence that `goes_on(previous, sentence)` says continues the one before it,
    appended to it."""
    joined: list[str] = []
    for sentence in sentences:
        if joined and goes_on(joined[-1], sentence):
            joined[-1] = f"{joined[-1]} {sentence}"
        else:
            joined.append(sentence)
    return joined


def _move_enumerators(sentences: list[str]) -> list[str]:
    """Each trailing enumerator that opens the next item moved to the start of that item. It
    opens one when it follows a colon ("the following: 1."), continues the numbering of the
    items before it ("1. Use 2."), or ends an item numbered in another style ("5. Sale C.");
    otherwise it is the sentence's own ("The limit is 5.")."""
    moved: list[str] = []
    carried = ""
    last: dict[str, int] = {}  # per numbering style, the number of the latest item
    for sentence in sentences:
        if carried:
            sentence = f"{carried} {sentence}"
            carried = ""
        if _LONE_ENUMERATOR.match(sentence):
            carried = sentence  # "A." split off the heading it numbers
            continue
        leading = _LEADING_ENUMERATOR.match(sentence)
        item_style = ""
        if leading:
            item_style, number = _numbering(leading.group(1))
            last[item_style] = number
        else:
            last.clear()  # the list, if any, has ended
        found = _TRAILING_ENUMERATOR.search(sentence)
        if found and found.start() > 0:
            style, number = _numbering(found.group(1))
            head = sentence[: found.start()].rstrip()
            if (head.endswith(":") or last.get(style) == number - 1
                    or (item_style and style != item_style)):  # "5. Offer for sale C."
                carried, sentence = found.group(1), head
        moved.append(sentence)
    if carried:
        moved.append(carried)
    return moved


def _numbering(enumerator: str) -> tuple[str, int]:
    """An enumerator's style (digits, lower or upper case letters, bracketed or not) and number."""
    bracketed = enumerator.startswith("(") or enumerator.endswith(")")
    mark = enumerator.strip("().")
    if mark.isdigit():
        style, number = "digit", int(mark)
    else:
        style = "lower" if mark.islower() else "upper"
        number = ord(mark.lower()) - ord("a") + 1
    return (f"({style})" if bracketed else style), number


def _join_list_items(sentences: list[str]) -> list[str]:
    """Short enumerated items appended to the lead-in that ends with a colon before them, while
    they keep the first item's numbering style."""
    joined: list[str] = []
    list_style = ""
    for sentence in sentences:
        leading = _LEADING_ENUMERATOR.match(sentence)
        style = _numbering(leading.group(1))[0] if leading else ""
        is_item = bool(style) and len(sentence.split()) <= LIST_ITEM_WORDS
        if joined and is_item and (style == list_style or (
                not list_style and joined[-1].endswith(":"))):
            joined[-1] = f"{joined[-1]} {sentence}"
            list_style = style
            continue
        list_style = ""
        joined.append(sentence)
    return joined


def item_number(statement: str) -> tuple[str, int] | None:
    """The numbering style and number of an enumerated item ("(2) ..." -> ("(digit)", 2));
    a bulleted item ("• ...") is (BULLET_STYLE, 0)."""
    leading = _LEADING_ENUMERATOR.match(statement)
    if leading:
        return _numbering(leading.group(1))
    return (BULLET_STYLE, 0) if _BULLET.match(statement) else None


def next_item(previous: tuple[str, int], number: tuple[str, int]) -> bool:
    """Whether an item numbered `number` continues the list whose latest item is `previous`:
    the next number in the same style ("(1)" then "(2)"), or another bullet after a bullet."""
    if number[0] == BULLET_STYLE:
        return previous[0] == BULLET_STYLE
    return number == (previous[0], previous[1] + 1)


def opens_with_enumerator(statement: str) -> bool:
    """Whether the statement is an enumerated or bulleted item ("b. ...", "(2) ...", "• ...")."""
    return item_number(statement) is not None


def whole_statement(fragment: str, page_text: str, max_words: int) -> str:
    """The statement of the page that `fragment` is part of, if it is at most `max_words`
    words; else `fragment`. Chunks overlap by words, not sentences, so a passage can open or
    close inside a sentence ("be retained for a period of 10 years."): quoted alone, such a
    piece has lost its subject or its end."""
    wanted = normalize_for_match(fragment)
    for statement in split_statements(page_text):
        if wanted in normalize_for_match(statement):
            if len(statement.split()) > max_words:
                return fragment
            numbered = _LEADING_ENUMERATOR.match(statement)
            if numbered and not _LEADING_ENUMERATOR.match(fragment):
                statement = statement[numbered.end():]  # "a." opens the item, not the quote
            return statement
    return fragment
