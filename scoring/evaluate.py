"""`satsft eval`: read a finished output's rows of one split and a model's predictions, score every task.

Predictions are JSONL of {"sample_id", "prediction"} (the model's raw text). A row without a prediction is
counted missing and wrong. The report has exactly this shape, so other tools can read it:
{"split": ..., "tasks": {"<task>": {"n", "missing", "malformed", "metrics": {...}}}} (grounding tasks add
"per_class"; multiple_choice adds "questions"; the share checks add "quoted"). Where the build or mix checked
its tiles for ground another split shows, "shared_ground" counts this split's tiles and rows on such ground
(with the report that counted them, and the tiles it could not check), and where there are some, every task
adds "unseen_ground": {"n", "metrics", "places", "interval_95"}, its scores on the other rows. Every task adds
"places" and, from 10 places on, "interval_95": {metric: [low, high]} (scoring.intervals). Scored predictions
add "predictions" and, per task, "majority_baseline" and, from 10 places on, "vs_majority_95" (the model's
score minus the baseline's over the same draws); a baseline adds "baseline"; both add
"majority_fitted_on": {"split", "rows"} (and "tasks_counted_on_scored_rows" for tasks that split lacks), where
the majority answers were counted; the random baseline instead adds "answers_drawn_from", the same fields for
where its other rows' answers were drawn.
"""

from __future__ import annotations

import hashlib
import io
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import pyarrow.parquet as pq

from scoring import metrics, parse
from scoring.intervals import MIN_PLACES, RESAMPLES, PlaceSums, difference_intervals, intervals_of
from scoring.places import NEIGHBOURS_NOTE, Joined, mix_places, places_and_neighbours, rows_by_place
from scoring.reasoning import STRIPPED, UNFINISHED, final_answer
from transforms.classes import CLASS_NAMES, display_name
from transforms.fileio import DamagedFile
from transforms.input.sidecars import UTF8_BOM
from transforms.json_array import NotAnArray, json_array_rows, written_whole
from transforms.mix.rows import tile_key
from transforms.output import claim
from transforms.output.tree import (
    MIX_REPORT_NAME,
    PLACES_FILE,
    REPORT_NAME,
    ROW_SIDECARS_DIR,
    SHARED_GROUND_FILE,
    OutputTree,
    parse_report,
    record_files,
    split_of_file,
)
from transforms.rows import DamagedRow, image_path_problem, read_row_lines
from transforms.splits.footprints import read_held_out
from transforms.tasks import is_grounding, scorer_of

BASELINES = ("majority", "random")
Counted = TypeVar("Counted")


class EvalError(ValueError):
    """The dataset or the predictions cannot be scored; the message says why."""


def _text(message: dict[str, Any]) -> str:
    return "\n".join(p.get("text") or "" for p in message["content"] if p.get("type") == "text")


def output_report(tree: OutputTree) -> tuple[str, dict[str, Any]]:
    """(file name, contents) of the report of a finished build or mix; EvalError when there is none."""
    name = next((n for n in (REPORT_NAME, MIX_REPORT_NAME) if tree.isfile(n)), None)
    if name is None:
        state = claim.unfinished_in(tree)
        raise EvalError(f"no {REPORT_NAME} in the dataset folder: {state}; score it once it has finished" if state
                        else f"no {REPORT_NAME} in the dataset folder; pass the --output folder of satsft build")
    return name, parse_report(tree.read(name), name)


def split_files(tree: OutputTree, split: str, report: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """(format, the record files of ``split``) of a build or mix; EvalError when there are none."""
    fmt, every = record_files(report if report is not None else output_report(tree)[1])
    if not every:
        raise EvalError("the dataset has no Parquet or JSONL rows to score (it was written in other formats "
                        "only): build it again with --formats jsonl or parquet among them")
    paths = [p for p in every if split_of_file(p) == split]
    if not paths:
        raise EvalError(f"the dataset has no {split!r} rows; choose --split from "
                        f"{', '.join(sorted({split_of_file(p) for p in every}))}")
    return fmt, paths


def load_rows(tree: OutputTree, split: str, report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The split's rows as {sample_id, task, tile_stem, prompt, reference, metadata}."""
    return list(iter_rows(tree, split, report))


def iter_rows(tree: OutputTree, split: str, report: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """load_rows one row at a time: the train split, read only to count its answers, need not fit in memory."""
    fmt, paths = split_files(tree, split, report)
    for path in paths:
        for record in records(tree, path, fmt):
            user = next(m for m in record["messages"] if m["role"] == "user")
            md = record["metadata"]
            yield {"sample_id": md["sample_id"], "task": md["task"], "tile_stem": md.get("tile_stem", ""),
                   "prompt": _text(user), "reference": _text(record["messages"][-1]), "metadata": md}


def records(tree: OutputTree, path: str, fmt: str, images: bool = False) -> Iterator[dict[str, Any]]:
    """The rows of one record file; with ``images``, Parquet rows keep their embedded `images` column."""
    with tree.open(path) as f:
        if fmt == "parquet":
            parquet = pq.ParquetFile(f)
            embedded = images and "images" in parquet.schema_arrow.names
            columns = ["messages", "metadata"] + (["images"] if embedded else [])
            for batch in parquet.iter_batches(batch_size=100 if embedded else 1024, columns=columns):
                for row in batch.to_pylist():
                    problem = image_path_problem(row)
                    if problem:
                        raise DamagedRow(f"{path} row {row['metadata']['sample_id']}: {problem}")
                    yield row
        else:
            yield from read_row_lines(f, path)


def _class_fractions(data: bytes | str) -> dict[str, float] | None:
    """A production-analysis row sidecar's class shares; None when it is not one (damaged, edited by hand)."""
    try:
        shares = orjson.loads(data)["sentinel_sidecar"]["class_fractions"]
    except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
        return None
    if not isinstance(shares, dict) or not all(isinstance(v, (int, float)) for v in shares.values()):
        return None
    return shares


def tile_shares(tree: OutputTree, stems: set[str], unreadable: list[str] | None = None
                ) -> dict[str, dict[str, float]]:
    """tile stem -> class shares, from the production-analysis row sidecars (files or Parquet shards); empty
    when the build kept no sidecars (then quoted shares are checked against the reference answer only). A
    sidecar that is not one is passed over for another of its tile (each profile's row has one); a tile with none
    is left to the reference answer too, and the first of its sidecars is added to ``unreadable``."""
    out: dict[str, dict[str, float]] = {}
    bad: dict[str, str] = {}
    shards = [p for p in tree.under(ROW_SIDECARS_DIR) if p.endswith(".parquet")]
    for shard in shards:
        with tree.open(shard) as f:
            for row in pq.read_table(f, columns=["task", "tile_stem", "sidecar"]).to_pylist():
                if row["task"] == "production_analysis" and row["tile_stem"] in stems and row["tile_stem"] not in out:
                    shares = _class_fractions(row["sidecar"])
                    if shares is not None:
                        out[row["tile_stem"]] = shares
                    else:
                        bad.setdefault(row["tile_stem"], f"{shard} ({row['tile_stem']})")
    for path in tree.under(ROW_SIDECARS_DIR):
        name = path.rsplit("/", 1)[-1]
        stem = name.split("__analysis_", 1)[0]
        if "__analysis_" in name and name.endswith(".json") and stem in stems and stem not in out:
            shares = _class_fractions(tree.read(path))
            if shares is not None:
                out[stem] = shares
            else:
                bad.setdefault(stem, path)
    if unreadable is not None:
        unreadable += sorted(where for stem, where in bad.items() if stem not in out)
    return out


def places_sharing_ground(tree: OutputTree, name: str, report: dict[str, Any], rows: list[dict[str, Any]]
                          ) -> tuple[Joined, int]:
    """The scored rows' bases joined into one place where their tiles show the same ground: from a build's
    manifest, or the list a mix wrote; and, for a build, how many of those places share ground with a
    neighbouring one (scoring.places.neighbouring_places; a mix keeps no footprints: 0). EvalError when the
    mix's list is damaged."""
    if name == REPORT_NAME:
        return places_and_neighbours(tree, {r["tile_stem"] for r in rows if r["tile_stem"]})
    try:
        return mix_places(tree, bool(report.get("outputs", {}).get("places_files_written"))), 0
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        raise EvalError(f"{PLACES_FILE} does not parse ({err.__class__.__name__}); `satsft validate` names the "
                        "damage: run the mix again to write it anew") from err


def _batch_answer(obj: dict[str, Any]) -> str | None:
    """The answer of one line of OpenAI Batch API output (also what ``vllm run-batch`` writes), None for a
    request that failed: ``response.body.choices[0].message.content``, a string or a list of text parts."""
    response = obj.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "".join(texts) if texts else None
    return content if isinstance(content, str) else None


class Predictions(dict):
    """sample id -> answer (the text after a reasoning model's thought: scoring.reasoning), how many ids the file
    answered more than once (the last answer counts), and how many answers came after a thought or were one
    never closed, by the id they answer (a repeated id counts once, as its last answer)."""

    repeated: int = 0

    def __init__(self) -> None:
        super().__init__()
        self.reasoning: dict[str, str] = {}

    def put(self, sid: str, raw: str) -> None:
        self.repeated += sid in self
        self[sid], kind = final_answer(raw)
        if kind:
            self.reasoning[sid] = kind
        else:
            self.reasoning.pop(sid, None)

    def reasoning_counts(self, ids: set[str]) -> dict[str, int]:
        """{STRIPPED: n, UNFINISHED: n} over the answers to ``ids`` (the rows scored), only the kinds there are (a
        report without thoughts stays as it was)."""
        kinds = [kind for sid, kind in self.reasoning.items() if sid in ids]
        return {k: kinds.count(k) for k in (STRIPPED, UNFINISHED) if k in kinds}


def read_predictions(path: str) -> Predictions:
    """sample id -> the model's raw answer, from satsft's ``{"sample_id", "prediction"}`` lines, from OpenAI
    Batch API output whose ``custom_id`` is the sample id (a failed request gives no prediction: missing), or from
    LLaVA's ``model_vqa`` answers (``{"question_id", "text"}``, asked with the ``id`` of ``--formats llava`` rows,
    which is the sample id); the file may be compressed (.jsonl.gz, .bz2, .zst, .xz)."""
    from transforms import fileio

    out = Predictions()
    try:
        # .jsonl (UTF-16 with its byte order mark too), or compressed as batch outputs often are (.jsonl.gz, ...)
        lines = list(fileio.read_lines(path))
    except fileio.DamagedFile as err:
        raise EvalError(f"{path} cannot be read ({err})") from err
    if lines and written_whole(next((x for x in lines if x.strip()), b"")):  # json.dump(predictions, f), indented
        try:
            values = list(json_array_rows(io.BytesIO(b"\n".join(lines)), one_after_another=True))
        except (DamagedFile, NotAnArray) as err:
            raise EvalError(f"{path} holds JSON written whole that does not parse: {err}") from err
        for n, obj in enumerate(values, 1):
            _take_prediction(obj, out, f"{path} answer {n}")
        return out
    for n, line in enumerate(lines, 1):
        if n == 1:
            line = line.removeprefix(UTF8_BOM)
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            if b"\x00" in line:
                raise EvalError(f"{path} line {n} holds NUL bytes, as UTF-16 text without a byte order mark does: "
                                "save the file as UTF-8") from err
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:  # orjson only says "surrogates not allowed"
                raise EvalError(f"{path} line {n} is not UTF-8 text (byte 0x{line[bad.start]:02x} at column "
                                f"{bad.start + 1}): save the file as UTF-8") from err
            raise EvalError(f"{path} line {n} is not JSON: {err}") from err
        _take_prediction(obj, out, f"{path} line {n}")
    return out


def _take_prediction(obj: Any, out: Predictions, where: str) -> None:
    """One answer of a predictions file into ``out``, in whichever of read_predictions' shapes it comes."""
    if isinstance(obj, dict) and isinstance(obj.get("custom_id"), str) and "response" in obj:
        answer = _batch_answer(obj)
        if answer is not None:
            out.put(obj["custom_id"], answer)
        return
    if isinstance(obj, dict) and "sample_id" not in obj and isinstance(obj.get("question_id"), str) and (
            isinstance(obj.get("text"), str)):  # LLaVA's model_vqa answers, asked with each row's id
        out.put(obj["question_id"], obj["text"])
        return
    if not isinstance(obj, dict) or not isinstance(obj.get("sample_id"), str) or not isinstance(
            obj.get("prediction"), str):
        raise EvalError(f"{where}: expected {{\"sample_id\": str, \"prediction\": str}}, a line of "
                        "OpenAI Batch API output whose custom_id is the sample id, or LLaVA's "
                        "{\"question_id\": str, \"text\": str} answers")
    out.put(obj["sample_id"], obj["prediction"])


class _Commonest:
    """The most frequent of a stream of answers (ties: the first in sorting order), as min(-count, answer) over
    all of them would pick it. Counts are kept by a 16-byte digest and the text only of answers seen twice, so
    a train split of answers unique to their row (production summaries, captions) costs no more than its count."""

    def __init__(self) -> None:
        self.counts: Counter[bytes] = Counter()
        self.texts: dict[bytes, str] = {}
        self.first: str | None = None  # the first in sorting order of all answers: the pick when none repeats

    def add(self, answer: str) -> None:
        key = hashlib.blake2b(answer.encode(), digest_size=16).digest()
        self.counts[key] += 1
        if self.counts[key] == 2:
            self.texts[key] = answer
        if self.first is None or answer < self.first:
            self.first = answer

    def pick(self) -> str:
        top = max(self.counts.values(), default=0)
        if top < 2:
            return self.first or ""
        return min(self.texts[k] for k, n in self.counts.items() if n == top)


@dataclass
class MajorityAnswers:
    """What the majority baseline answers, counted on the rows it was fitted on: each task's commonest answer
    (as the scorer reads it) and, for comparison, how often each class was the answer."""

    common: dict[str, str] = field(default_factory=dict)
    wins: Counter[str] = field(default_factory=Counter)
    rows: int = 0
    split: str = ""  # which split the rows were

    def answer(self, row: dict[str, Any]) -> str | None:
        """The baseline's answer to a row; None for a task the fitted rows do not have."""
        asked = parse.classes_mentioned(row["prompt"]) if row["task"] == "comparison" else []
        if asked:
            return min((_class_answer(c) for c in asked), key=lambda a: (-self.wins[a], a))
        return self.common.get(row["task"])


def fit_majority(rows: Iterable[dict[str, Any]], split: str = "") -> MajorityAnswers:
    """The majority baseline's answers, counted in one pass over ``rows`` (a train split that may not fit in
    memory): for comparison, of the two classes asked, the one that was the answer more often."""
    counted: dict[str, _Commonest] = defaultdict(_Commonest)
    fitted = MajorityAnswers(split=split)
    for r in rows:
        key = _majority_key(r)
        counted[r["task"]].add(key)
        if r["task"] == "comparison":
            fitted.wins[key] += 1
        fitted.rows += 1
    fitted.common = {task: c.pick() for task, c in counted.items()}
    return fitted


POOL = 1000  # answers per task kept for the random baseline: a seeded reservoir sample of the rows read


@dataclass
class AnswerPool:
    """What the random baseline's "another row's answer" is drawn from: per task, up to POOL (sample id, tile
    stem, answer) triples of the rows it was filled from, a seeded uniform sample."""

    answers: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    rows: int = 0
    split: str = ""

    def draw(self, row: dict[str, Any], rng: random.Random) -> str | None:
        """Another tile's answer to the row's task, never the row's own nor one of its tile's other rows (a
        tile's five production_analysis profiles quote the same shares); None where there is none."""
        kept = self.answers.get(row["task"], [])

        def other(entry: tuple[str, str, str]) -> bool:
            return entry[0] != row["sample_id"] and not (entry[1] and entry[1] == row.get("tile_stem"))

        for _ in range(32):  # a tile's own rows are a few of the pool: a draw or two on average
            if not kept:
                return None
            entry = rng.choice(kept)
            if other(entry):
                return entry[2]
        found = [entry for entry in kept if other(entry)]
        return rng.choice(found)[2] if found else None


def fill_answer_pool(rows: Iterable[dict[str, Any]], split: str = "", seed: int = 0) -> AnswerPool:
    """One pass over ``rows`` (a train split that may not fit in memory), keeping a reservoir of POOL answers
    per task."""
    rng = random.Random(f"answer-pool-{seed}")
    pool = AnswerPool(split=split)
    seen: Counter[str] = Counter()
    for r in rows:
        task, pool.rows = r["task"], pool.rows + 1
        seen[task] += 1
        kept = pool.answers.setdefault(task, [])
        entry = (r["sample_id"], r.get("tile_stem") or "", r["reference"])
        if len(kept) < POOL:
            kept.append(entry)
        else:
            slot = rng.randrange(seen[task])
            if slot < POOL:
                kept[slot] = entry
    return pool


def baseline_predictions(rows: list[dict[str, Any]], kind: str, seed: int = 0,
                         fitted: MajorityAnswers | None = None, pool: AnswerPool | None = None) -> dict[str, str]:
    """Trivial answers to read a model's score against. ``majority``: the answers ``fitted`` counted (the train
    split's, as a model that learnt only how often each answer is right would give them), and for a task it did
    not see, the scored rows' own commonest answer. ``random``: a seeded random option, class, count, box or
    another tile's answer, drawn from ``pool`` (the train split's) and for a task it lacks from the scored rows,
    never the row's own tile's: drawn from the real fixture's 40 test production_analysis rows, one in eight was
    the row's own or its tile's, and percent_within_2pp read 0.347 where other tiles' answers give 0.130."""
    if kind == "majority":
        if fitted is None or any(r["task"] not in fitted.common for r in rows):
            own = fit_majority(rows)  # the tasks the fitted rows lack (all of them without fitted answers)
            fitted = MajorityAnswers(own.common | (fitted.common if fitted else {}),
                                     fitted.wins if fitted and "comparison" in fitted.common else own.wins)
        return {r["sample_id"]: fitted.answer(r) or "" for r in rows}
    rng = random.Random(seed)
    if pool is None or any(r["task"] not in pool.answers for r in rows):
        own = fill_answer_pool(rows, seed=seed)
        pool = AnswerPool(own.answers | (pool.answers if pool else {}))
    out = {}
    for r in sorted(rows, key=lambda r: r["sample_id"]):
        task = r["task"]
        if task == "multiple_choice":
            out[r["sample_id"]] = rng.choice("ABCD")
        elif is_grounding(task):
            label = rng.choice(CLASS_NAMES)
            x1, y1 = rng.random() * 0.8, rng.random() * 0.8
            box = [round(x1, 4), round(y1, 4), round(x1 + 0.2, 4), round(y1 + 0.2, 4)]
            out[r["sample_id"]] = orjson.dumps([{"label": label, "bbox": box}]).decode()
        elif task == "counting":
            out[r["sample_id"]] = str(rng.randint(1, 5))
        elif task == "absence":
            out[r["sample_id"]] = rng.choice(("Yes.", "No."))
        elif task in ("referring", "comparison"):
            named = parse.classes_mentioned(r["prompt"]) if task == "comparison" else list(CLASS_NAMES)
            out[r["sample_id"]] = display_name(rng.choice(named or list(CLASS_NAMES))) + "."
        else:
            out[r["sample_id"]] = pool.draw(r, rng) or ""
    return out


def _majority_key(row: dict[str, Any]) -> str:
    """The answer the majority baseline counts: what the scorer reads of a reference (its letter, its yes or no,
    its class) where one is read, so that phrasings of the same answer count together ("Grass." and "The box
    shows grass."); the whole reference elsewhere."""
    task, reference = row["task"], row["reference"]
    if task == "multiple_choice":
        return row["metadata"].get("answer") or parse.letter(reference, parse.options_of(row["prompt"])) or ""
    if task == "absence":
        said = parse.yes_no(reference)
        return f"{said.capitalize()}." if said else reference
    if task in ("referring", "comparison"):
        named = parse.one_class(reference, set(parse.classes_mentioned(row["prompt"])) if task == "comparison"
                                else None)
        return _class_answer(named) if named else reference
    return reference


def _class_answer(name: str) -> str:
    """A class as a one-word answer: "Grass.", "Snow and ice."."""
    return f"{display_name(name).capitalize()}."


def score(rows: list[dict[str, Any]], predictions: dict[str, str], shares: dict[str, dict[str, float]],
          split: str, box_scale: float = 1.0, intervals: bool = False,
          draws: dict[str, PlaceSums] | None = None, joined: Joined | None = None) -> dict[str, Any]:
    """Every task's scores over ``rows``; with ``intervals``, each task adds "places" and "interval_95", the
    bootstrap over its places (scoring.intervals; ``joined``: bases one place for showing the same ground). ``draws``
    receives each task's place-by-place sums, for a comparison drawn over the same places."""
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_task[r["task"]].append(r)
    tasks = {}
    for task, task_rows in sorted(by_task.items()):
        def scored(some: list[dict[str, Any]], task: str = task) -> metrics.TaskScore | None:
            return score_task(task, some, predictions, shares, box_scale)

        result = scored(task_rows)
        if result is None:
            continue  # cross_view and foreign tasks have no scorer: nothing to check an answer against
        tasks[task] = result.as_dict()
        if intervals or draws is not None:
            sums = PlaceSums.of(rows_by_place(task_rows, joined), result, scored)
            if draws is not None:
                draws[task] = sums
            if intervals:
                tasks[task].update(intervals_of(sums))
    return {"split": split, "tasks": tasks}


def score_task(task: str, task_rows: list[dict[str, Any]], predictions: dict[str, str],
               shares: dict[str, dict[str, float]], box_scale: float = 1.0) -> metrics.TaskScore | None:
    """One task's scores over its rows; None for a task with no scorer."""
    got = [predictions.get(r["sample_id"]) for r in task_rows]
    scorer = scorer_of(task)
    if scorer == "grounding":
        return metrics.score_grounding([(r["reference"], p) for r, p in zip(task_rows, got, strict=True)], box_scale)
    if scorer == "multiple_choice":
        return metrics.score_multiple_choice([
            (r["metadata"].get("question_id") or r["sample_id"].rsplit("_r", 1)[0],
             r["metadata"].get("answer") or parse.letter(r["reference"], parse.options_of(r["prompt"])) or "",
             parse.options_of(r["prompt"]), p) for r, p in zip(task_rows, got, strict=True)])
    if scorer == "counting":
        return metrics.score_counting([(r["reference"], p) for r, p in zip(task_rows, got, strict=True)])
    if scorer == "choice":
        return _score_choice(task, task_rows, got)
    if scorer == "shares":
        return metrics.score_shares([(r["reference"], p, shares.get(r["tile_stem"], {}))
                                     for r, p in zip(task_rows, got, strict=True)])
    return None


def _score_choice(task: str, rows: list[dict[str, Any]], got: list[str | None]) -> metrics.TaskScore:
    """referring: the one class the answer names; comparison: the first of the two asked about it names;
    absence: yes or no."""
    if task == "absence":
        return metrics.score_choice([(r["reference"], p) for r, p in zip(rows, got, strict=True)], parse.yes_no)
    s = metrics.TaskScore(n=len(rows))
    right = 0
    for r, prediction in zip(rows, got, strict=True):
        candidates = set(parse.classes_mentioned(r["prompt"])) if task == "comparison" else None
        want = parse.one_class(r["reference"], candidates)
        if prediction is None:
            s.missing += 1
            continue
        answer = parse.one_class(prediction, candidates)
        if answer is None:
            s.malformed += 1
        right += answer is not None and answer == want
    s.ratio("accuracy", right, len(rows))
    return s


def shown_metrics(task: dict[str, Any]) -> str:
    """A task's metrics as the table cell shows them, each with its 95% interval over places where there is
    one."""
    bounds = task.get("interval_95", {})
    return ", ".join(f"{k} {v:.3f}" + (f" [{bounds[k][0]:.3f}, {bounds[k][1]:.3f}]" if k in bounds else "")
                     for k, v in task.get("metrics", {}).items())


def interval_note(report: dict[str, Any]) -> str:
    """The sentences under the table that say what the bracketed bounds are, and where there are none."""
    said = []
    if any("interval_95" in t for t in report["tasks"].values()):
        said.append(f"[low, high]: the 95% interval of each score over {RESAMPLES} draws of the split's places (base "
                    "POIs, joined where their tiles show the same ground) with replacement, since the rows of one "
                    "place are not independent draws; a narrow interval needs many places.")
        near = report.get("neighbouring_places")
        if near:
            said.append(NEIGHBOURS_NOTE.format(n=near["sharing_ground"], total=near["places"]) + ".")
    few = sorted(task for task, t in report["tasks"].items() if "places" in t and t["places"] < MIN_PLACES)
    if few:
        said.append(f"No interval under {MIN_PLACES} places, too few for a bootstrap to say how far a score could "
                    f"move: {', '.join(few)}.")
    return " ".join(said)


def majority_fit_note(fit: dict[str, Any], split: str) -> str:
    """The sentence under the table that says where the majority baseline's answers come from."""
    if fit["split"] == split and split != "train":
        note = (f"Majority baseline: each task's commonest answer in the {split} split itself ({fit['rows']} rows; the "
                "output has no train rows), so it knows the answers it is scored on.")
    else:
        note = (f"Majority baseline: each task's commonest answer in the train split ({fit['rows']} rows), what a "
                "model that learnt only how often each answer is right would say.")
    own = fit.get("tasks_counted_on_scored_rows")
    if own:
        note += f" The train split has no rows of {', '.join(own)}: those count the {split} rows' own answers."
    return note


def random_note(drawn: dict[str, Any], split: str) -> str:
    """The sentence under a random baseline's table that says where its other rows' answers come from."""
    if drawn["split"] == split and split != "train":
        note = (f"Random baseline: a random option, class, count or box, or another {split} row's answer (the output "
                "has no train rows).")
    else:
        note = ("Random baseline: a random option, class, count or box, or another row's answer drawn from the train "
                f"split ({drawn['rows']} rows).")
    own = drawn.get("tasks_counted_on_scored_rows")
    if own:
        note += f" The train split has no rows of {', '.join(own)}: those draw from the other {split} rows."
    return note


def markdown_table(report: dict[str, Any]) -> str:
    beside = any("majority_baseline" in t for t in report["tasks"].values())
    head = "| task | n | missing | malformed | metrics |" + (" majority baseline |" if beside else "")
    lines = [f"split: {report['split']}", "", head, "|" + "---|" * (head.count("|") - 1)]
    given = report.get("predictions", {})
    damaged = report.get("row_sidecars_unreadable")
    if damaged:
        lines.insert(1, f"WARNING: {damaged['tiles']} tile(s) have no readable production_analysis row sidecar "
                        f"(first: {damaged['first']}): the shares their answers quote were checked against the "
                        "reference answers alone")
    if given.get(UNFINISHED):
        lines.insert(1, f"WARNING: {given[UNFINISHED]} answers are a reasoning model's thought never closed (<think> "
                        "without </think>): the model stopped while thinking, and each counts as malformed; raise "
                        "its max_tokens")
    if given.get(STRIPPED):
        lines.insert(1, f"note: {given[STRIPPED]} answers begin with a reasoning model's thought (<think>...</think>): "
                        "the text after it was scored")
    if given.get("repeated"):
        lines.insert(1, f"WARNING: {given['repeated']} sample ids are answered more than once in the predictions (the "
                        "last answer counts): two runs in one file?")
    if given.get("unmatched"):
        lines.insert(1, f"WARNING: {given['unmatched']} of {given['given']} predictions name no {report['split']} "
                        "row of this dataset (another split: pass --split; another build: its sample ids differ)")
    for task, t in report["tasks"].items():
        if t.get("boxes_outside_unit"):
            lines.insert(1, f"WARNING: {task}: {t['boxes_outside_unit']} of {t['n'] - t['missing']} answers give box "
                            "coordinates outside 0-1 (pixels, or a 0-1000 scale?); the rows ask for [x1, y1, x2, y2] "
                            "as fractions of the chip's width and height, and such boxes match nothing: a model that "
                            "answers in other units is scored in them with --box-scale 1000 (or the chip's width in "
                            "pixels)")
    for task, t in report["tasks"].items():
        line = f"| {task} | {t['n']} | {t['missing']} | {t['malformed']} | {shown_metrics(t)} |"
        if beside:
            line += " " + ", ".join(f"{k} {v:.3f}" for k, v in t.get("majority_baseline", {}).items()) + " |"
        lines.append(line)
    said = interval_note(report)
    if said:
        lines += ["", said]
    versus = difference_note(report)
    if versus:
        lines += ["", versus]
    fit = report.get("majority_fitted_on")
    if fit and (beside or report.get("baseline") == "majority"):
        lines += ["", majority_fit_note(fit, report["split"])]
    if report.get("answers_drawn_from"):
        lines += ["", random_note(report["answers_drawn_from"], report["split"])]
    shared = report.get("shared_ground", {})
    if shared.get("rows"):
        where = f"{MIX_REPORT_NAME}, shared_ground" if shared.get("counted_in") == MIX_REPORT_NAME else (
            f"{REPORT_NAME}, splits.shared_ground")
        lines += ["", f"{shared['rows']} of these rows show {shared['tiles']} tile(s) whose ground another split shows "
                  f"too ({where}): a model may have trained on it. The same scores "
                  "on the other rows only, ground no other split shows:", "", "| task | n | metrics |", "|---|---|---|"]
        for task, t in report["tasks"].items():
            unseen = t.get("unseen_ground", {})
            lines.append(f"| {task} | {unseen.get('n', 0)} | {shown_metrics(unseen) or '-'} |")
    if shared.get("tiles_not_checked"):
        lines += ["", f"NOTE: {shared['tiles_not_checked']} tile(s) of this dataset say nothing of where they lie "
                  "(no footprint in their sidecar, or a build made before manifests held one), so they were not "
                  "checked for shared ground: rows on ground another split shows may be more than counted here."]
    return "\n".join(lines)


def ground_key(metadata: Mapping[str, Any], mix: bool) -> str:
    """How metadata/shared_ground.jsonl names a row's tile: by its stem in a build; in a mix, where two builds
    can hold the same stem, as <source>/<stem> with the mix source the row came from (and, for a row of an
    inner mix, the sources that carried it there: tile_key)."""
    return tile_key(metadata) if mix else (metadata.get("tile_stem") or "")


def shared_ground_section(name: str, report: dict[str, Any]) -> dict[str, Any]:
    """The report's count of tiles on shared ground (a build's splits.shared_ground, a mix's shared_ground);
    empty where the output did not check."""
    section = (report.get("splits", {}) if name == REPORT_NAME else report).get("shared_ground")
    return section if isinstance(section, dict) else {}


def held_out_on_shared_ground(tree: OutputTree, name: str, report: dict[str, Any]) -> dict[str, str] | None:
    """Validation and test tiles (as ground_key names them) whose ground another split shows -> their split:
    listed in metadata/shared_ground.jsonl where the report's shared_ground section counts them. None where the
    output did not check (a build made before, a mix of no build) or counted held-out tiles but wrote no list
    (a mix made before the list); EvalError when the list is damaged."""
    checked = shared_ground_section(name, report)
    if not checked:
        return None
    held_out = sum(n for s, n in checked.get("tiles", {}).items() if s != "train")
    if not held_out:
        return {}  # none shares ground (the report, written last, says so; a list left beside it is not read)
    if not tree.isfile(SHARED_GROUND_FILE):
        return None  # counted, but listed nowhere: a mix made before mixes wrote the list
    try:
        return read_held_out(tree.read(SHARED_GROUND_FILE))
    except (orjson.JSONDecodeError, KeyError, TypeError) as err:
        raise EvalError(f"{SHARED_GROUND_FILE} does not parse ({err.__class__.__name__}); `satsft validate` names "
                        "the damage: run the build or mix again to write it anew") from err


def shared_ground_stems(tree: OutputTree, split: str, name: str, report: dict[str, Any]) -> set[str] | None:
    """The tiles of ``split`` on ground another split shows (held_out_on_shared_ground); None where that is
    not known, and for train, whose tiles the list does not hold (it names the held-out side of each pair)."""
    held_out = None if split == "train" else held_out_on_shared_ground(tree, name, report)
    return None if held_out is None else {key for key, s in held_out.items() if s == split}


def counted_on_train(tree: OutputTree, split: str, output: dict[str, Any], rows: list[dict[str, Any]],
                     count: Callable[[Iterable[dict[str, Any]], str], Counted]) -> Counted:
    """What a baseline answers from, counted on the train split (read a row at a time): a baseline counted on
    the rows it answers knows their answers. On a 300-tile sample tree's 42 test comparison rows, the majority
    baseline counting which class wins on those rows scored 0.857, the train split's counts 0.571; the random
    one drew a row's own or its tile's answer for one in eight of the real fixture's test production rows. The
    scored rows' own when they are the train split, or the output has none (a mix of evaluation sources only),
    and the report says so."""
    if split != "train":
        try:
            return count(iter_rows(tree, "train", output), "train")
        except EvalError:  # no train rows
            pass
    return count(rows, split)


def fitted_section(fitted: MajorityAnswers | AnswerPool, split: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's account of where a baseline's answers come from: the split and its rows, and the tasks that
    split has no rows of (answered from the scored rows' own)."""
    section: dict[str, Any] = {"split": fitted.split, "rows": fitted.rows}
    seen = fitted.common if isinstance(fitted, MajorityAnswers) else fitted.answers
    own = sorted({r["task"] for r in rows} - set(seen))
    if own:
        section["tasks_counted_on_scored_rows"] = own
    return section


def add_differences(report: dict[str, Any], model: dict[str, PlaceSums], floor: dict[str, PlaceSums]) -> None:
    """Every task of 10 places or more gains "vs_majority_95": {metric: [low, high]}, the model's score minus
    the majority baseline's over the same draws of places: whether a model beats answering from the answers'
    frequencies alone, beyond what another draw of places could change."""
    for task, t in report["tasks"].items():
        found = difference_intervals(model[task], floor[task]) if task in model and task in floor else {}
        if found:
            t["vs_majority_95"] = found


LOWER_IS_BETTER = ("mae", "unknown_class_rate")


def difference_note(report: dict[str, Any]) -> str:
    """The sentence under a model's table that names the scores not clearly better than the majority
    baseline's: clearly worse (the 95% interval of the difference on the wrong side of zero), or no clear
    difference (it spans zero)."""
    checked, worse, unclear = 0, [], []
    for task, t in report["tasks"].items():
        for name, (low, high) in t.get("vs_majority_95", {}).items():
            checked += 1
            sign = -1 if name in LOWER_IS_BETTER else 1
            if min(sign * low, sign * high) > 0:
                continue
            diff = t["metrics"][name] - t.get("majority_baseline", {}).get(name, 0.0)
            said = f"{task} {name} {diff:+.3f} [{low:+.3f}, {high:+.3f}]"
            (worse if max(sign * low, sign * high) < 0 else unclear).append(said)
    if not checked:
        return ""
    if not worse and not unclear:
        return f"Against the majority baseline: better on all {checked} scores with an interval."
    parts = [f"worse on {'; '.join(worse)}"] if worse else []
    parts += [f"no clear difference on {'; '.join(unclear)}"] if unclear else []
    return ("Against the majority baseline (model minus baseline, 95% interval over the same draws of places): "
            f"{'; '.join(parts)}. Better on every other score with an interval.")


def evaluate(dataset: str, split: str, predictions: dict[str, str] | None = None,
             baseline: str | None = None, seed: int = 0, box_scale: float = 1.0) -> dict[str, Any]:
    tree = OutputTree(dataset)
    if not tree.exists():
        raise EvalError(f"{dataset!r} holds no files; pass the --output folder of a build")
    name, output = output_report(tree)
    rows = load_rows(tree, split, output)
    fitted = None if baseline == "random" else counted_on_train(tree, split, output, rows, fit_majority)
    pool = counted_on_train(tree, split, output, rows, lambda some, at: fill_answer_pool(some, at, seed)) if (
        baseline == "random") else None
    if baseline:
        predictions = baseline_predictions(rows, baseline, seed, fitted, pool)
    unreadable: list[str] = []
    shares = tile_shares(tree, {r["tile_stem"] for r in rows if scorer_of(r["task"]) == "shares"}, unreadable)
    model: dict[str, PlaceSums] = {}
    joined, neighbours = places_sharing_ground(tree, name, output, rows)
    report = score(rows, predictions or {}, shares, split, box_scale, intervals=True, draws=model, joined=joined)
    if neighbours:
        report["neighbouring_places"] = {"places": len(rows_by_place(rows, joined)), "sharing_ground": neighbours}
    if box_scale != 1.0:
        report["box_scale"] = box_scale
    shared = shared_ground_stems(tree, split, name, output)
    if shared is not None:  # the output checked: score the rows on ground no other split shows apart as well
        mix = name == MIX_REPORT_NAME
        keys = [ground_key(r["metadata"], mix) for r in rows]
        unseen = [r for r, key in zip(rows, keys, strict=True) if key not in shared]
        report["shared_ground"] = {"tiles": len(set(keys) & shared),
                                   "rows": len(rows) - len(unseen), "counted_in": name}
        unchecked = shared_ground_section(name, output).get("tiles_without_footprint", 0)
        if unchecked:  # a tile that says nothing of where it lies may share ground: the split is a lower bound
            report["shared_ground"]["tiles_not_checked"] = unchecked
        if len(unseen) < len(rows):
            clean = score(unseen, predictions or {}, shares, split, box_scale, intervals=True, joined=joined)["tasks"]
            for task, t in report["tasks"].items():
                t["unseen_ground"] = {k: v for k, v in clean[task].items() if k in (
                    "n", "metrics", "places", "interval_95")} if task in clean else {"n": 0, "metrics": {}}
    if unreadable:  # their tiles' quoted shares were checked against the reference answers alone
        report["row_sidecars_unreadable"] = {"tiles": len(unreadable), "first": unreadable[0]}
    if baseline:
        report["baseline"] = baseline
    if fitted is not None:
        report["majority_fitted_on"] = fitted_section(fitted, split, rows)
    if pool is not None:
        report["answers_drawn_from"] = fitted_section(pool, split, rows)
    if not baseline:  # a model's score beside what always giving the commonest answer scores on the same rows
        drawn: dict[str, PlaceSums] = {}
        floor = score(rows, baseline_predictions(rows, "majority", fitted=fitted), shares, split, draws=drawn,
                      joined=joined)["tasks"]
        for task, t in report["tasks"].items():
            t["majority_baseline"] = floor[task]["metrics"]
        add_differences(report, model, drawn)
        # Answers to rows of another split or build count nowhere: say how many, or the table reads as a model
        # that answered nothing.
        ids = {r["sample_id"] for r in rows}
        report["predictions"] = {"given": len(predictions or {}),
                                 "unmatched": sum(1 for sid in predictions or {} if sid not in ids),
                                 "repeated": getattr(predictions, "repeated", 0),
                                 **(predictions.reasoning_counts(ids) if isinstance(predictions, Predictions) else {})}
    return report
