"""multiple_choice: single-choice questions with options A-D, each asked four times with the options rotated
(MMBench's CircularEval), about one in six with no right class so "None of the above" is the answer.

Questions: which class covers the most of the chip; which class is absent; which class fills a box. Distractors
are real classes, present in the tile where that makes the question harder. All rotations of a question come
from one tile, so they share its split.
"""

from __future__ import annotations

from dataclasses import dataclass

from transforms.classes import CLASS_NAMES, display_name
from transforms.ids import stable_rng, stable_uniform
from transforms.prompts import pick
from transforms.rows import PreparedTile, Row, make_row
from transforms.tasks.eval_common import box_question_region, box_text

TASK = "multiple_choice"
LETTERS = "ABCD"
NONE_OF_THE_ABOVE = "None of the above"
UNANSWERABLE_SHARE = 1 / 6
MOST_MARGIN = 0.02  # the largest class must lead by 2 pp, or "covers the most" is a coin toss


@dataclass(frozen=True)
class Question:
    kind: str
    classes: tuple[str, str, str]  # the three class options, in their base order
    answer: str  # one of them, or NONE_OF_THE_ABOVE
    fields: dict


def _cap(name: str) -> str:
    return name[:1].upper() + name[1:]


def _choose(pt: PreparedTile, kind: str, right: list[str], wrong: list[str], fields: dict) -> Question | None:
    """Three options: the right class and two wrong ones, or (about one question in six) three wrong ones.
    Wrong options come first from the plausible ones listed first in ``wrong``."""
    unanswerable = stable_uniform(pt.stem, TASK, kind, "unanswerable") < UNANSWERABLE_SHARE
    if not right or len(wrong) < (3 if unanswerable else 2):
        return None
    options = wrong[:3] if unanswerable else [right[0], *wrong[:2]]
    a, b, c = (options[int(i)] for i in stable_rng(pt.stem, TASK, kind, "order").permutation(3))
    return Question(kind, (a, b, c), NONE_OF_THE_ABOVE if unanswerable else right[0], fields)


def questions(pt: PreparedTile) -> list[Question]:
    present = [CLASS_NAMES[c] for c, _ in sorted(pt.fractions.items(), key=lambda kv: (-kv[1], kv[0]))]
    with_regions = {r.label for r in pt.tile.regions}
    absent = [n for n in CLASS_NAMES if n not in present and n not in with_regions]
    out = []
    shares = sorted(pt.fractions.values(), reverse=True)
    if len(shares) >= 2 and shares[0] - shares[1] >= MOST_MARGIN:
        q = _choose(pt, "most", present[:1], present[1:] + absent, {})
        out.append(q)
    if absent:
        q = _choose(pt, "absent", absent, present, {})
        out.append(q)
    region = box_question_region(pt, TASK)
    if region is not None:
        inside = region.label
        q = _choose(pt, "box", [inside], [n for n in present if n != inside] + [n for n in absent if n != inside],
                    {"box": box_text(region, pt.tile.size)})
        out.append(q)
    return [q for q in out if q is not None]


def rotations(q: Question) -> list[tuple[list[str], str]]:
    """The four circular rotations of the options (three classes, then "None of the above"): (options in
    letter order, the right letter)."""
    base = [_cap(display_name(c)) for c in q.classes] + [NONE_OF_THE_ABOVE]
    right = NONE_OF_THE_ABOVE if q.answer == NONE_OF_THE_ABOVE else _cap(display_name(q.answer))
    out = []
    for r in range(4):
        options = base[r:] + base[:r]
        out.append((options, LETTERS[options.index(right)]))
    return out


def rows(pt: PreparedTile) -> list[Row]:
    out = []
    t = pt.ctx.templates
    for q in questions(pt):
        qid = f"{pt.stem}__mc_{q.kind}"
        for r, (options, letter) in enumerate(rotations(q)):
            sid = f"{qid}_r{r}"
            listing = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
            question = pick(t, TASK, f"question_{q.kind}", qid, **q.fields)
            prompt = pick(t, TASK, "prompt", qid, question=question, options=listing)
            answer = pick(t, TASK, "answer", qid, letter=letter, option=options[LETTERS.index(letter)])
            row = make_row(pt, TASK, sid, [pt.chip_path], prompt, answer,
                           sidecar_extra={"question_id": qid, "answer": letter, "options": options})
            row.record["metadata"].update(question_id=qid, answer=letter)
            out.append(row)
    return out
