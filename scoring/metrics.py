"""Per-task scores from (reference, prediction) pairs. A missing or malformed prediction is wrong, never
skipped: every scorer divides by all the rows of its task."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from scoring import parse

Box = tuple[float, float, float, float]
IOU_MATCH = 0.5
SHARE_TOLERANCE = 0.02


@dataclass
class TaskScore:
    n: int = 0
    missing: int = 0
    malformed: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    # (numerator, denominator) of each metric that is a ratio of sums over rows: scores of a place's rows alone
    # add up to the split's, so a bootstrap over places resamples sums instead of scoring again (scoring.intervals)
    sums: dict[str, tuple[float, float]] = field(default_factory=dict)

    def ratio(self, name: str, numerator: float, denominator: float) -> None:
        """Sets a metric that is numerator / denominator (0 when nothing was counted), and keeps both."""
        self.sums[name] = (float(numerator), float(denominator))
        self.metrics[name] = _ratio(numerator, denominator)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "missing": self.missing, "malformed": self.malformed,
                "metrics": {k: round(v, 6) for k, v in self.metrics.items()}, **self.extra}


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Box], predicted: Sequence[Box]) -> int:
    """One-to-one matches at IoU >= 0.5, best pairs first (greedy, as COCO-style evaluators do)."""
    pairs = sorted(((iou(t, p), i, j) for i, t in enumerate(truth) for j, p in enumerate(predicted)), reverse=True)
    used_t, used_p, matched = set(), set(), 0
    for value, i, j in pairs:
        if value < IOU_MATCH:
            break
        if i not in used_t and j not in used_p:
            used_t.add(i)
            used_p.add(j)
            matched += 1
    return matched


def _ratio(a: float, b: float, empty: float = 0.0) -> float:
    return a / b if b else empty


def f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def score_grounding(items: Sequence[tuple[str, str | None]], box_scale: float = 1.0) -> TaskScore:
    """(reference answer, prediction or None) per row -> precision, recall, F1 at IoU 0.5 with one-to-one
    matching within a label; mean IoU = each true box's best IoU with a predicted box of its label.
    ``box_scale``: what a predicted coordinate of the chip's far edge reads (1000 for models that ground on a
    0-1000 grid, the chip's width for pixels), so a model scored before fine-tuning is read in its own units."""
    s = TaskScore(n=len(items))
    per = defaultdict(lambda: Counter())
    ious = []
    outside = 0  # answers with a coordinate outside [0, 1]: pixels, or another model's 0-1000 scale
    for reference, prediction in items:
        truth = parse.boxes(reference) or []
        pred = None if prediction is None else parse.boxes(prediction)
        if prediction is None:
            s.missing += 1
        elif pred is None:
            s.malformed += 1
        pred = [(label, tuple(v / box_scale for v in box)) for label, box in pred or []]
        outside += any(not -1e-6 <= v <= 1 + 1e-6 for _, box in pred for v in box)
        for label in {lab for lab, _ in truth} | {lab for lab, _ in pred}:
            t = [b for lab, b in truth if lab == label]
            p = [b for lab, b in pred if lab == label]
            m = match_boxes(t, p)
            per[label].update(tp=m, fp=len(p) - m, fn=len(t) - m)
            ious += [max((iou(tb, pb) for pb in p), default=0.0) for tb in t]
    tp, fp, fn = (sum(c[k] for c in per.values()) for k in ("tp", "fp", "fn"))
    s.ratio("precision@0.5", tp, tp + fp)
    s.ratio("recall@0.5", tp, tp + fn)
    s.metrics["f1@0.5"] = f1(s.metrics["precision@0.5"], s.metrics["recall@0.5"])
    s.ratio("mean_iou", sum(ious), len(ious))
    per_class = {}
    for label, c in sorted(per.items()):
        p, r = _ratio(c["tp"], c["tp"] + c["fp"]), _ratio(c["tp"], c["tp"] + c["fn"])
        per_class[label] = {"precision@0.5": round(p, 6), "recall@0.5": round(r, 6),
                            "f1@0.5": round(f1(p, r), 6), "boxes": c["tp"] + c["fn"]}
    s.extra["per_class"] = per_class
    s.extra["boxes_outside_unit"] = outside
    return s


def score_multiple_choice(items: Sequence[tuple[str, str, dict[str, str], str | None]]) -> TaskScore:
    """(question id, right letter, options, prediction or None) per row -> accuracy, and CircularEval accuracy:
    a question counts only when every one of its rotations is answered right."""
    s = TaskScore(n=len(items))
    right = 0
    questions: dict[str, bool] = {}
    for qid, answer, options, prediction in items:
        got = None
        if prediction is None:
            s.missing += 1
        else:
            got = parse.letter(prediction, options)
            if got is None:
                s.malformed += 1
        ok = got == answer
        right += ok
        questions[qid] = questions.get(qid, True) and ok
    s.ratio("accuracy", right, len(items))
    s.ratio("circular_accuracy", sum(questions.values()), len(questions))
    s.extra["questions"] = len(questions)
    return s


def score_choice(items: Sequence[tuple[str, str | None]], read) -> TaskScore:
    """Accuracy for answers read to one value (a class, yes/no): ``read`` turns a text into that value."""
    s = TaskScore(n=len(items))
    right = 0
    for reference, prediction in items:
        if prediction is None:
            s.missing += 1
            continue
        got = read(prediction)
        if got is None:
            s.malformed += 1
        right += got is not None and got == read(reference)
    s.ratio("accuracy", right, len(items))
    return s


def score_counting(items: Sequence[tuple[str, str | None]]) -> TaskScore:
    """Exact match and mean absolute error; a missing or unreadable count is wrong and counts as the whole true
    count off (as if it said zero)."""
    s = TaskScore(n=len(items))
    exact, errors = 0, []
    for reference, prediction in items:
        truth = parse.count(reference) or 0
        got = None if prediction is None else parse.count(prediction)
        if prediction is None:
            s.missing += 1
        elif got is None:
            s.malformed += 1
        exact += got == truth
        errors.append(abs((got if got is not None else 0) - truth))
    s.ratio("exact", exact, len(items))
    s.ratio("mae", sum(errors), len(errors))
    return s


def score_shares(items: Sequence[tuple[str, str | None, dict[str, float]]]) -> TaskScore:
    """(reference, prediction or None, the tile's shares by class) per row.

    percent_within_2pp: the mean, over rows where the reference or the answer quotes a percentage, of how many
    of the classes the reference gives a figure for the answer gives one for within 2 pp of the tile's share (or
    of a figure the reference gives, such as a predicted share), over those classes plus the answer's wrong
    figures for other classes. Where the reference quotes nothing (a caption), the share of the answer's figures
    that are right. An answer quoting nothing scores 0 where the reference quotes, as does a missing one. Rows
    where neither quotes are left out: captions rarely quote, and any answer used to score 1.0 on them. Absent
    when no row quotes. (Counting only the answer's own figures gave a constant answer about a rare class, "about
    1.2% of the scene is shrub and scrub", 1.000 on the real fixture's test class_focus rows, whatever they asked.)
    class_recall: the mean, over rows whose reference names a class, of the share of those classes the answer
    names too (what a caption is checked by). unknown_class_rate: of all class names the answers mention, the
    share naming a class that is neither in the tile nor in the reference."""
    s = TaskScore(n=len(items))
    quoting_scores, recall_scores, mentions, unknown, quoted_total = [], [], 0, 0, 0
    for reference, prediction, shares in items:
        ref_quoted, ref_named = parse.quoted_shares(reference), set(parse.classes_mentioned(reference))
        if prediction is None or not prediction.strip():
            s.missing += prediction is None
            s.malformed += prediction is not None
            if ref_quoted:
                quoting_scores.append(0.0)
            if ref_named:
                recall_scores.append(0.0)
            continue
        allowed: dict[str, list[float]] = defaultdict(list)
        for cls, v in [*shares.items(), *ref_quoted]:
            allowed[cls].append(v)
        quoted = parse.quoted_shares(prediction)
        quoted_total += len(quoted)
        right = [any(abs(v - a) <= SHARE_TOLERANCE + 1e-9 for a in allowed.get(cls, [])) for cls, v in quoted]
        if ref_quoted:  # the figures the reference gives, each given right, less for each wrong figure besides
            asked = {cls for cls, _ in ref_quoted}
            given = {cls for (cls, _), ok in zip(quoted, right, strict=True) if ok and cls in asked}
            wrong_besides = sum(not ok for (cls, _), ok in zip(quoted, right, strict=True) if cls not in asked)
            quoting_scores.append(len(given) / (len(asked) + wrong_besides))
        elif quoted:  # a reference without figures (a caption): the answer's own figures, each right or wrong
            quoting_scores.append(sum(right) / len(quoted))
        named = parse.classes_mentioned(prediction)
        if ref_named:
            recall_scores.append(len(ref_named & set(named)) / len(ref_named))
        known = set(shares) | ref_named
        mentions += len(named)
        unknown += sum(cls not in known for cls in named)
    if quoting_scores:
        s.ratio("percent_within_2pp", sum(quoting_scores), len(quoting_scores))
    if recall_scores:
        s.ratio("class_recall", sum(recall_scores), len(recall_scores))
    s.ratio("unknown_class_rate", unknown, mentions)
    s.extra["quoted"] = quoted_total
    return s
