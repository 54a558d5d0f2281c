"""Task registry: adding a task is a module with ``rows(tile)`` and one TaskSpec entry here. The entry holds
everything the rest of satsft needs to know of a task; no other module keeps a list of task names."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from transforms.rows import PreparedTile, Row
from transforms.tasks import (
    absence,
    caption,
    class_focus,
    comparison,
    counting,
    cross_view,
    grounding_all,
    grounding_per_class,
    multiple_choice,
    production_analysis,
    referring,
)

# The version of the rules each task makes rows by (1 unless listed). One moves whenever the rows that task makes
# of the same tile, options and templates change (a fixed wrong answer, a new field): every tile's fingerprint
# holds the versions of the tasks built, so a rebuild never keeps rows made by the earlier rules next to rows made
# by the new ones, and a change to a task the build does not make costs it nothing.
# absence 2: says "no X" only at share 0; 3: a question about a present class beside each about an absent one.
# class_focus 2: a count of patches only where the regions hold all of the class. referring and multiple_choice
# 2: boxes of at most a quarter of the chip, of a class drawn evenly among those with one. comparison 2: the
# closest race of two classes other than the commonest, not a pair drawn from all.
ROW_RULES: dict[str, int] = {"absence": 3, "class_focus": 2, "referring": 2, "multiple_choice": 2, "comparison": 2}


def rows_version(tasks: Iterable[str]) -> str:
    """The fingerprint's text for the row rules of these tasks, e.g. ``satsft-rows/absence.3,caption.1``."""
    return "satsft-rows/" + ",".join(f"{t}.{ROW_RULES.get(t, 1)}" for t in sorted(set(tasks)))

TaskFn = Callable[[PreparedTile], list[Row]]
SCORERS = ("grounding", "multiple_choice", "counting", "choice", "shares", "")


@dataclass(frozen=True)
class TaskSpec:
    """One task as the rest of the code sees it.

    ``rows_per_tile`` bounds the rows a tile can give (None: one per production profile); a row's sidecar
    folder follows from its tile's slot and this bound alone. (Every build reads each chip once, for the tile's
    fingerprint; only tasks with a render spec decode it.) ``grounding``: its answer is a JSON list of boxes,
    checked by the gate and converted to LLaVA's box text. ``eval``: a benchmark task, off unless asked for
    (``--tasks ...`` or ``all+eval``). ``scored_as``: how `satsft eval` scores it ("" when nothing in the
    row can check an answer)."""

    rows: TaskFn
    rows_per_tile: int | None
    grounding: bool = False
    eval: bool = False
    scored_as: str = ""

    def __post_init__(self) -> None:
        if self.scored_as not in SCORERS:
            raise ValueError(f"scored_as must be one of {SCORERS}, not {self.scored_as!r}")


TASKS: dict[str, TaskSpec] = {
    "production_analysis": TaskSpec(production_analysis.rows, None, scored_as="shares"),
    "caption": TaskSpec(caption.rows, 1, scored_as="shares"),
    "grounding_all": TaskSpec(grounding_all.rows, 1, grounding=True, scored_as="grounding"),
    "grounding_per_class": TaskSpec(grounding_per_class.rows, 6, grounding=True, scored_as="grounding"),
    "class_focus": TaskSpec(class_focus.rows, 6, scored_as="shares"),
    "absence": TaskSpec(absence.rows, 2, scored_as="choice"),
    "cross_view": TaskSpec(cross_view.rows, 1),
    "multiple_choice": TaskSpec(multiple_choice.rows, 12, eval=True, scored_as="multiple_choice"),
    "referring": TaskSpec(referring.rows, 1, eval=True, scored_as="choice"),
    "counting": TaskSpec(counting.rows, 1, eval=True, scored_as="counting"),
    "comparison": TaskSpec(comparison.rows, 1, eval=True, scored_as="choice"),
}


def task_names() -> tuple[str, ...]:
    """Every registered task, in registry order (the order rows of a tile are made in)."""
    return tuple(TASKS)


def default_tasks() -> tuple[str, ...]:
    """The training tasks: what ``--tasks all`` (the default) selects."""
    return tuple(name for name, spec in TASKS.items() if not spec.eval)


def eval_tasks() -> tuple[str, ...]:
    return tuple(name for name, spec in TASKS.items() if spec.eval)


def is_grounding(task: str) -> bool:
    """Foreign rows in a mix may name tasks satsft does not know: they are not grounding rows."""
    spec = TASKS.get(task)
    return spec is not None and spec.grounding


def scorer_of(task: str) -> str:
    spec = TASKS.get(task)
    return spec.scored_as if spec is not None else ""


def rows_per_tile_bound(tasks: tuple[str, ...], n_profiles: int) -> int:
    """Rows one tile can give with these tasks: each task's bound, the profile count for per-profile ones."""
    return sum(n_profiles if TASKS[t].rows_per_tile is None else TASKS[t].rows_per_tile for t in tasks)


# Import-time views for the modules that only read them (the CLI's help and the tests).
TASK_NAMES: tuple[str, ...] = task_names()
EVAL_TASKS: tuple[str, ...] = eval_tasks()
DEFAULT_TASKS: tuple[str, ...] = default_tasks()
