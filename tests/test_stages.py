"""One stage numbering everywhere."""

from core.stages import stage_count_text, stage_name, stage_of, stage_range


def test_stage_zero_is_the_start_and_later_stages_count_against_the_last():
    assert stage_name(0) == "Start" and stage_name(7) == "Stage 7"
    assert stage_of(0, 39) == "Start"
    assert stage_of(12, 39) == "Stage 12 of 39"


def test_ranges_and_counts_read_as_clinicians_say_them():
    assert stage_range(0, 5) == "Start – Stage 5"
    assert stage_range(2, 5) == "Stages 2–5"
    assert stage_range(3, 3) == "Stage 3"
    assert stage_count_text(range(40)) == "Start + 39 stages"
    assert stage_count_text([1, 2, 3]) == "3 stages"
    assert stage_count_text([0, 1]) == "Start + 1 stage"
