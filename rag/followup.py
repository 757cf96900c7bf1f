"""Follow-ups: turn "which of those are used in soccer?" into a question retrieval can answer.

A follow-up that refers back (a pronoun or demonstrative such as "those", "it", "their") or
leaves out its subject ("and in winter?", "why?") means the conversation's topic, which is in the
previous question. The standalone question is the follow-up's own words plus the previous
question's content words that it lacks: the topic, not the whole previous question glued on, so
its question words ("which", "list") and its ask do not steer the search. A follow-up that names
its own subject stands alone and is searched as it is. The documents the previous answer cited
(its `[file p.N]` markers) are where a follow-up most likely continues, and what that answer said
is its context: "which terms exactly?" asks for a detail of the very sentence it quoted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from rag.normalize import FUNCTION_WORDS
from rag.types import Turn

# Words that point back at something said before. "that" is left out: it is far more often a
# conjunction or relative pronoun ("the rule that applies") than a reference.
_REFERRING = frozenset(
    [
        "it", "its", "they", "them", "their", "theirs", "this", "these", "those", "he", "him",
        "his", "she", "her", "such", "same", "there", "one", "ones", "former", "latter", "above",
    ]
)
# Openings of an elliptical follow-up: "and for vehicles?", "what about storage?", "also ...".
_ELLIPSIS = re.compile(r"^\s*(?:and|or|but|also|so|then|what about|how about)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W_][\w'’.-]*[^\W_]|[^\W_]")
_CITED = re.compile(r"\[([^\[\]]+?) p\.(\d+)(?:,[^\]]*)?\]")
# Question words that carry no topic: dropped from the borrowed terms.
_ASKING = frozenset(
    [
        "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "list", "name",
        "describe", "explain", "tell", "give", "please", "does", "do", "did", "is", "are", "was",
        "were", "can", "could", "should", "would", "will",
        "what's", "which's", "who's", "when's", "where's", "why's", "how's",
    ]
)
SHORT_WORDS = 3  # a follow-up with at most this many content words needs its topic


@dataclass(frozen=True, slots=True)
class Standalone:
    """The question to search with, and the documents the conversation was about."""

    query: str
    documents: tuple[str, ...] = ()
    borrowed: tuple[str, ...] = ()  # the topic words taken from the previous question
    context: str = ""  # what the previous answer said (without its page marks)

    @property
    def is_follow_up(self) -> bool:
        return bool(self.borrowed)


def _words(text: str) -> list[str]:
    return [w.lower().replace("’", "'").strip(".'-") for w in _WORD.findall(text)]


def _content(words: Sequence[str]) -> list[str]:
    return [w for w in words if w and w not in FUNCTION_WORDS and w not in _ASKING]


def refers_back(question: str) -> bool:
    """Whether the question points at an earlier turn or leaves out its subject."""
    words = _words(question)
    if any(w in _REFERRING for w in words) or _ELLIPSIS.match(question):
        return True
    return len(_content(words)) <= SHORT_WORDS


def cited_documents(answer: str) -> tuple[str, ...]:
    """The documents an earlier answer cited, in order of first mention."""
    return tuple(dict.fromkeys(match.group(1).strip() for match in _CITED.finditer(answer)))


def standalone_question(question: str, history: Sequence[Turn]) -> Standalone:
    """The retrieval query for `question` in a conversation whose earlier turns are `history`."""
    if not history or not refers_back(question):
        return Standalone(question)
    previous = history[-1]
    own = set(_content(_words(question)))
    borrowed = tuple(dict.fromkeys(
        w for w in _content(_words(previous.question)) if w not in own
    ))
    if not borrowed:
        return Standalone(question)
    query = f"{question.strip()} ({' '.join(borrowed)})"
    context = " ".join(_CITED.sub(" ", previous.answer).split())
    return Standalone(query, cited_documents(previous.answer), borrowed, context)
