"""A reasoning model's thought before its answer: only the text after it is the answer."""

from __future__ import annotations

from scoring.reasoning import STRIPPED, UNFINISHED, final_answer


def test_the_text_after_the_last_thought_is_the_answer():
    assert final_answer("<think>A or B? Not C.</think>\n\nB") == ("B", STRIPPED)
    assert final_answer("The template opened the thought.\n</think>\nNo.") == ("No.", STRIPPED)
    assert final_answer("<THINKING>x</THINKING> 3") == ("3", STRIPPED)
    assert final_answer("◁think▷hm◁/think▷Water.") == ("Water.", STRIPPED)
    assert final_answer("<think>a</think>b<think>c</think> Trees") == ("Trees", STRIPPED)
    # GLM-4.1V-Thinking: <answer> after the thought, boxes between special tokens
    assert final_answer("<think>t</think><answer><|begin_of_box|>B<|end_of_box|></answer>") == ("B", STRIPPED)


def test_an_unclosed_thought_is_no_answer_and_plain_answers_are_kept():
    assert final_answer("  <think>Let me count the patches: one, two") == ("", UNFINISHED)
    assert final_answer("B. Grass") == ("B. Grass", "")
    assert final_answer(" [1, 2] <answer>x</answer> ") == (" [1, 2] <answer>x</answer> ", "")
    # a thought mentioned inside an answer, not opening it, is text like any other
    assert final_answer("No <think> here") == ("No <think> here", "")
