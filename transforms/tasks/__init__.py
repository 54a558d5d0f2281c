"""Task registry: adding a task is adding a module with ``rows(tile, ctx)`` and one entry here."""

from __future__ import annotations

from collections.abc import Callable

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

TaskFn = Callable[[PreparedTile], list[Row]]

TASKS: dict[str, TaskFn] = {
    "production_analysis": production_analysis.rows,
    "caption": caption.rows,
    "grounding_all": grounding_all.rows,
    "grounding_per_class": grounding_per_class.rows,
    "class_focus": class_focus.rows,
    "absence": absence.rows,
    "cross_view": cross_view.rows,
    # Benchmark tasks, scored by `satsft eval`; off unless asked for (--tasks ... or all+eval).
    "multiple_choice": multiple_choice.rows,
    "referring": referring.rows,
    "counting": counting.rows,
    "comparison": comparison.rows,
}
TASK_NAMES: tuple[str, ...] = tuple(TASKS)
EVAL_TASKS: tuple[str, ...] = ("multiple_choice", "referring", "counting", "comparison")
DEFAULT_TASKS: tuple[str, ...] = tuple(t for t in TASK_NAMES if t not in EVAL_TASKS)
