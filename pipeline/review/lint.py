"""Row text a model should not learn: wording slips that templates and numbers make together. One check over
every text of every row, so a new template or task is covered without a case of its own.

Pure and Beam-free: the tests run it over whole builds, and it reads any row of FORMATS.md 2.1 shape.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from transforms.classes import CLASS_NAMES, PLURAL_CLASSES, display_name

_PLURAL = "|".join(sorted(display_name(c) for c in PLURAL_CLASSES))
_SINGULAR_VERBS = ("is|was|has|does|covers|accounts|appears|makes|holds|shows|remains|dominates|grows|"
                   "shrinks|expands|recedes|rises|falls|increases|decreases|stays|sits|lies|forms")
# "an" goes before a vowel sound: these start with a vowel letter and a consonant sound, or the other way round.
_VOWEL_LETTER_CONSONANT_SOUND = {"one", "once", "unique", "unit", "united", "universal", "use", "used", "user",
                                 "usual", "usually", "uniform", "european", "eu", "utm"}
_CONSONANT_LETTER_VOWEL_SOUND = {"hour", "hours", "honest", "honour", "heir"}
_ACRONYM_VOWEL_SOUND = set("AEFHILMNORSX")  # letters whose name starts with a vowel sound ("an S2 chip")

RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("doubled_sign", re.compile(r"[+\-\u2212]\s?[+\-\u2212]\d")),
    ("plural_placeholder", re.compile(r"\w\((?:s|es)\)")),
    ("doubled_space", re.compile(r"\S {2,}\S")),
    ("doubled_word", re.compile(r"\b([A-Za-z]+) \1\b", re.IGNORECASE)),
    ("plural_class_singular_verb", re.compile(rf"\b(?:{_PLURAL}) (?:{_SINGULAR_VERBS})\b", re.IGNORECASE)),
    ("singular_verb_before_plural_class", re.compile(rf"\b(?:there|it) (?:is|was) (?:no |any )?(?:{_PLURAL})\b",
                                                     re.IGNORECASE)),
    ("one_with_plural_noun", re.compile(r"(?<![\d.,])\b1 (?:[a-z]+ )?(?:regions|patches|candidates|boxes|"
                                        r"areas|pixels|tiles)\b")),
    ("plural_verb_before_one", re.compile(r"\b(?:are|were) 1 (?!%|pp\b)")),
)
_ARTICLE = re.compile(r"\b([Aa]n?) ([A-Za-z][\w-]*)")


def _article_problem(article: str, word: str) -> bool:
    lowered = word.lower().split("-")[0]
    if word.isupper() and len(word) > 1 or (word[:1].isupper() and word[1:2].isdigit()):
        vowel_sound = word[0] in _ACRONYM_VOWEL_SOUND  # read letter by letter: "an L1C scene", "a TiM"
    elif lowered in _VOWEL_LETTER_CONSONANT_SOUND:
        vowel_sound = False
    elif lowered in _CONSONANT_LETTER_VOWEL_SOUND:
        vowel_sound = True
    else:
        vowel_sound = lowered[0] in "aeiou"
    return vowel_sound != (article.lower() == "an")


def text_problems(text: str) -> list[tuple[str, str]]:
    """(rule, the words that break it) for one text."""
    found = [(name, m.group(0)) for name, rule in RULES for m in rule.finditer(text)]
    found += [("a_an", m.group(0)) for m in _ARTICLE.finditer(text) if _article_problem(m.group(1), m.group(2))]
    return found


def row_texts(row: dict[str, Any]) -> Iterator[str]:
    for message in row["messages"]:
        content = message["content"]
        if isinstance(content, str):
            yield content
        else:
            yield from (p.get("text") or "" for p in content if p.get("type") == "text")


def lint_rows(rows: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """Problems by rule over many rows, each shown once with the sample id of its first row."""
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        for text in row_texts(row):
            for rule, words in text_problems(text):
                out.setdefault(rule, {}).setdefault(words, row["metadata"]["sample_id"])
    return {rule: [f"{words!r} ({sid})" for words, sid in sorted(seen.items())] for rule, seen in sorted(out.items())}


assert PLURAL_CLASSES <= set(CLASS_NAMES)
