"""The answer a reasoning model gives after its thinking: what `satsft eval` scores.

Reasoning VLMs (Qwen3-VL Thinking, GLM-4.1V-Thinking, Kimi-VL-Thinking, R1-style fine-tunes) write their thought
before the answer, `<think>...</think>`, and a server without a reasoning parser returns both as the content.
Scored as it came, the thought's own words were read as the answer: it names several options (a multiple-choice
answer naming several is wrong), opens with a word that is not the answer, quotes percentages and counts it
then rejects. The dataset's own answers behind such a block scored 0.054 on multiple_choice, 0 on referring and
counting, 0.5 on absence (a 30-tile sample tree's test split). Only the text after the thought is an answer.
"""

from __future__ import annotations

import re

# Closing marks of a thought: <think> (Qwen3, DeepSeek-R1 and their fine-tunes; the chat template may open it
# itself, so the answer holds only the close), <thinking>, <reasoning>, and Kimi-VL's ◁/think▷.
_CLOSE_RE = re.compile(r"</think>|</thinking>|</reasoning>|◁/think▷", re.IGNORECASE)
_OPEN_RE = re.compile(r"\s*(?:<think>|<thinking>|<reasoning>|◁think▷)", re.IGNORECASE)
# GLM-4.1V-Thinking answers <answer>...</answer> after its thought, its boxes between special box tokens.
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.IGNORECASE | re.DOTALL)
_BOX_TOKENS_RE = re.compile(r"<\|(?:begin|end)_of_box\|>")

STRIPPED = "reasoning_stripped"  # report keys under "predictions": answers read after a thought
UNFINISHED = "reasoning_unfinished"  # a thought never closed: the model stopped while thinking


def final_answer(raw: str) -> tuple[str, str]:
    """(the answer to score, STRIPPED / UNFINISHED / "") of a model's raw text. The text after the last close of
    a thought is the answer; a thought opened and never closed leaves none ("": malformed, as a model that ran
    out of tokens gave no answer). Text with no thought is the answer as it is."""
    closes = list(_CLOSE_RE.finditer(raw))
    if closes:
        answer, kind = raw[closes[-1].end():], STRIPPED
    elif _OPEN_RE.match(raw):
        return "", UNFINISHED
    else:
        answer, kind = raw, ""
    inner = _ANSWER_RE.search(answer)
    if inner is not None and kind:
        answer = inner.group(1)
    if kind:
        answer = _BOX_TOKENS_RE.sub("", answer).strip()
    return answer, kind
