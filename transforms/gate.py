"""The row gate (FORMATS.md 3): rows too long, bloated with internal payloads, or with broken boxes."""

from __future__ import annotations

from transforms.rows import Row, grounding_problem
from transforms.tasks import is_grounding

BANNED_SUBSTRINGS = ("_inputs", "_internal_coords", "npz_base64", "inline_base64", "decoder_attention_mask",
                     "engine.patch_diagnostics")
DEFAULT_MAX_PROMPT_CHARS = 16000


def gate_problem(row: Row, max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> tuple[str, str] | None:
    """(reason, detail) when the row must not be emitted, else None."""
    text = row.text()
    if len(text) > max_prompt_chars:
        return "prompt_too_long", f"{len(text)} > {max_prompt_chars} chars"
    lowered = text.lower()
    for banned in BANNED_SUBSTRINGS:
        if banned in lowered:
            return f"bloat:{banned}", ""
    if is_grounding(row.task):
        answer = row.record["messages"][-1]["content"][0]["text"]
        problem = grounding_problem(answer)
        if problem:
            return "invalid_grounding_json", problem
    return None
