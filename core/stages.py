"""How stages are named everywhere (viewer, imports, exports, captions, decks): the way clinicians say it.

Stage 0 is the patient's teeth before treatment and is called "Start"; every later stage keeps its
number, counted against the last stage: "Stage 12 of 39". A series with a start and 39 stages has
"Start + 39 stages" — never "40 stages", never "Stage 0 of 39".
"""

from __future__ import annotations

from collections.abc import Iterable

START = "Start"


def stage_name(stage: int) -> str:
    """"Start" for stage 0, otherwise "Stage 12"."""
    return START if stage == 0 else f"Stage {stage}"


def stage_of(stage: int, last: int) -> str:
    """"Start" or "Stage 12 of 39" (`last`: the final stage's number)."""
    return START if stage == 0 else f"Stage {stage} of {last}"


def stage_range(first: int, last: int) -> str:
    """"Start – Stage 5", "Stages 2–5" or "Stage 3" for a span of stages."""
    if first == last:
        return stage_name(first)
    return f"Start – Stage {last}" if first == 0 else f"Stages {first}–{last}"


def stage_count_text(stages: Iterable[int]) -> str:
    """"Start + 39 stages" (or "12 stages" when the series has no start picture)."""
    numbers = set(stages)
    after = len(numbers - {0})
    counted = f"{after} stage{'' if after == 1 else 's'}"
    return f"{START} + {counted}" if 0 in numbers else counted
