"""A small question-matching knowledge base backed by a JSON file shipped with the package."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from os import PathLike
from pathlib import Path

DEFAULT_THRESHOLD = 0.55
# Longer messages are not questions this knowledge base can answer; the cap bounds the cost of a turn.
MAX_TEXT_LENGTH = 500

_PACKAGE = __name__.rpartition(".")[0]
_TOKEN = re.compile(r"[a-z0-9]+")
# Only words that carry no meaning here; question words and "you" stay because they tell questions apart.
_STOP_WORDS = """a an the is are am was were be been being i me my mine we us our it its this that these those there
    to of in on at by for with from about into and or but so please just any some tell know want like would"""
# Words that shape a question but say little about its topic; they weigh this much whatever their frequency.
_WEAK_WORDS = """what who whom whose where when why how which you your yourself do does did can could should will
    have has get see show find make many much"""
STOP_WORDS = frozenset(_STOP_WORDS.split())
WEAK_WORDS = frozenset(_WEAK_WORDS.split())
WEAK_WEIGHT = 0.5


@dataclass(frozen=True)
class KnowledgeEntry:
    id: str
    questions: tuple[str, ...]
    answer: str


@lru_cache(maxsize=8192)
def _stem(word: str) -> str:
    # Crude suffix stripping; it only has to map "alerts"/"alert" and "logged"/"logging"/"log" to the same token.
    if len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    doubled = len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiou"
    if doubled or (len(word) > 4 and word.endswith("e")):
        word = word[:-1]
    return word


_WEAK_STEMS = frozenset(_stem(word) for word in WEAK_WORDS)


def tokenize(text: str) -> frozenset[str]:
    """Lowercase, split on anything but letters and digits, drop stop-words and single letters, stem."""
    words = _TOKEN.findall(text[:MAX_TEXT_LENGTH].lower())
    return frozenset(_stem(w) for w in words if w not in STOP_WORDS and (len(w) > 1 or w.isdigit()))


class KnowledgeBase:
    """Answers a message with the entry whose sample question is most similar to it.

    Similarity is a Dice coefficient over token sets where each token weighs its inverse document frequency,
    so words shared by many entries ("what", "how") count little and words unknown to the base count most.
    """

    def __init__(self, entries: Iterable[KnowledgeEntry], threshold: float = DEFAULT_THRESHOLD) -> None:
        self._entries = tuple(entries)
        self._threshold = threshold
        self._by_id: dict[str, KnowledgeEntry] = {}
        samples: list[tuple[KnowledgeEntry, frozenset[str]]] = []
        document_frequency: dict[str, int] = {}
        for entry in self._entries:
            _validate(entry, self._by_id)
            self._by_id[entry.id] = entry
            entry_samples = [tokenize(question) for question in entry.questions]
            samples.extend((entry, tokens) for tokens in entry_samples)
            for token in frozenset().union(*entry_samples):
                document_frequency[token] = document_frequency.get(token, 0) + 1
        count = len(self._entries)
        self._weights = {
            token: WEAK_WEIGHT if token in _WEAK_STEMS else math.log(1 + count / df)
            for token, df in document_frequency.items()
        }
        self._unknown_weight = math.log(1 + 2 * count)

        # Inverted index: token -> indexes of the samples containing it, so a match only visits candidates.
        self._samples = [entry for entry, _ in samples]
        self._sample_weights = [sum(self._weights[t] for t in tokens) for _, tokens in samples]
        self._index: dict[str, list[int]] = {}
        for position, (_, tokens) in enumerate(samples):
            for token in tokens:
                self._index.setdefault(token, []).append(position)

    @classmethod
    def load(cls, path: str | PathLike[str] | None = None, threshold: float = DEFAULT_THRESHOLD) -> KnowledgeBase:
        """Read and validate a knowledge file; the one shipped with the package by default."""
        if path is None:
            raw = resources.files(_PACKAGE).joinpath("knowledge.json").read_text(encoding="utf-8")
        else:
            raw = Path(path).read_text(encoding="utf-8")
        return cls.from_data(json.loads(raw), threshold)

    @classmethod
    def from_data(cls, data: object, threshold: float = DEFAULT_THRESHOLD) -> KnowledgeBase:
        if not isinstance(data, list):
            raise ValueError("knowledge file must contain a JSON list of entries")
        return cls((_parse_entry(position, item) for position, item in enumerate(data)), threshold)

    @property
    def entries(self) -> tuple[KnowledgeEntry, ...]:
        return self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, entry_id: str) -> KnowledgeEntry | None:
        return self._by_id.get(entry_id)

    def best(self, text: str | None) -> tuple[KnowledgeEntry | None, float]:
        """The most similar entry and its score (0..1), whatever the threshold."""
        tokens = tokenize(text or "")
        if not tokens:
            return None, 0.0
        weights = self._weights
        unknown = self._unknown_weight
        shared: dict[int, float] = {}
        text_weight = 0.0
        for token in tokens:
            weight = weights.get(token, unknown)
            text_weight += weight
            for position in self._index.get(token, ()):
                shared[position] = shared.get(position, 0.0) + weight
        best_position, best_score = -1, 0.0
        for position, weight in shared.items():
            score = 2 * weight / (text_weight + self._sample_weights[position])
            # Ties go to the earlier sample, i.e. the entry listed first in the file.
            if score > best_score or (score == best_score and position < best_position):
                best_position, best_score = position, score
        return (self._samples[best_position] if best_position >= 0 else None), best_score

    def match(self, text: str | None) -> KnowledgeEntry | None:
        entry, score = self.best(text)
        return entry if score >= self._threshold else None


def _validate(entry: KnowledgeEntry, seen: dict[str, KnowledgeEntry]) -> None:
    if not entry.id.strip():
        raise ValueError("knowledge entry with an empty id")
    if entry.id in seen:
        raise ValueError(f"knowledge entry {entry.id!r}: duplicate id")
    if not entry.answer.strip():
        raise ValueError(f"knowledge entry {entry.id!r}: empty answer")
    if not entry.questions:
        raise ValueError(f"knowledge entry {entry.id!r}: no questions")
    for question in entry.questions:
        if not tokenize(question):
            raise ValueError(f"knowledge entry {entry.id!r}: question {question!r} has no meaningful words")


def _parse_entry(position: int, item: object) -> KnowledgeEntry:
    if not isinstance(item, dict):
        raise ValueError(f"knowledge entry #{position}: not an object")
    entry_id = item.get("id")
    name = repr(entry_id) if isinstance(entry_id, str) and entry_id else f"#{position}"
    questions = item.get("questions")
    answer = item.get("answer")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise ValueError(f"knowledge entry {name}: missing or empty id")
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise ValueError(f"knowledge entry {name}: questions must be a list of strings")
    if not isinstance(answer, str):
        raise ValueError(f"knowledge entry {name}: answer must be a string")
    return KnowledgeEntry(entry_id, tuple(questions), answer)
