"""File-name conventions of imports: natural ordering, stage numbers and staged-model names.

Names only ever suggest an order or a stage; callers show the result for confirmation. Only the
base name counts (folders inside a ZIP are ignored), and matching is case-insensitive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from core.errors import ValidationError

#: Stage numbers above this are taken for something else (dates, order numbers, camera counters).
MAX_STAGE = 999
MODEL_EXTENSIONS = (".stl", ".ply", ".obj")

Arch = Literal["upper", "lower"]

_DIGITS = re.compile(r"(\d+)")
_STAGE_KEYWORD = re.compile(r"(?:stage|step|aligner|subsetup|setup)[\s_.#-]*(\d+)", re.IGNORECASE)
_HASH_NUMBER = re.compile(r"#\s*(\d+)")
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,4}$")
# Split "Stage07_MandibularJaw" into Stage / 07 / Mandibular / Jaw.
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_UPPER_TOKENS = frozenset({"upper", "maxillary", "maxilla", "max", "maxi", "u", "up"})
_LOWER_TOKENS = frozenset({"lower", "mandibular", "mandible", "mand", "l", "low"})


@dataclass(frozen=True)
class StagedModelName:
    """What a staged model's file name says: which arch, which stage."""

    arch: Arch
    stage: int

    def __post_init__(self) -> None:
        if self.arch not in ("upper", "lower"):
            raise ValidationError(f"arch {self.arch!r} must be 'upper' or 'lower'.")
        if isinstance(self.stage, bool) or not isinstance(self.stage, int) or not 0 <= self.stage <= MAX_STAGE:
            raise ValidationError(f"stage {self.stage!r} must be a whole number from 0 to {MAX_STAGE}.")


def base_name(name: str) -> str:
    """The last path component, whether the path uses "/" (ZIP) or "\\" (Windows)."""
    return re.split(r"[\\/]", name)[-1]


def natural_key(name: str) -> tuple[tuple[str | int, ...], str, str]:
    """Sort key ordering numbers by value wherever they occur ("Stage 2" < "Stage 10",
    "ClinCheck_02_upper.png" < "ClinCheck_10_upper.png"), case-insensitively, on the base name."""
    base = base_name(name).casefold()
    # re.split with a capturing group alternates text and digits, so positions always compare str
    # with str and int with int; the trailing fields make the order total and deterministic.
    parts = tuple(int(part) if index % 2 else part for index, part in enumerate(_DIGITS.split(base)))
    return parts, base, name


def stage_number(name: str) -> int | None:
    """The stage a file name refers to, or None.

    Recognises "Stage 07", "stage_7", "Step 7", "Aligner 12", "subsetup7", "#07", and a name whose
    only number is a lone token ("07.png", "ClinCheck_02_upper.png"). Numbers above `MAX_STAGE`
    are ignored (dates, order numbers, camera counters).
    """
    stem = _EXTENSION.sub("", base_name(name))
    for pattern in (_STAGE_KEYWORD, _HASH_NUMBER):
        match = pattern.search(stem)
        if match:
            return _valid_stage(match.group(1))
    numbers = _DIGITS.findall(stem)
    if len(numbers) != 1:
        return None
    # The number must stand alone ("IMG7" or "v30" are not stages).
    if re.search(rf"(?<![A-Za-z0-9]){numbers[0]}(?![A-Za-z0-9])", stem) is None:
        return None
    return _valid_stage(numbers[0])


def parse_staged_model_name(name: str) -> StagedModelName | None:
    """Arch and stage of a staged model file ("Upper_Stage_07.stl", "subsetup7_lower.stl",
    "Stage07_Mandibular.ply", "U7.obj"); None when the extension is not .stl/.ply/.obj or when the
    arch or the stage cannot be determined unambiguously."""
    base = base_name(name)
    if not base.lower().endswith(MODEL_EXTENSIONS):
        return None
    tokens = _TOKEN.findall(base.rsplit(".", 1)[0])
    upper = [token for token in tokens if token.lower() in _UPPER_TOKENS]
    lower = [token for token in tokens if token.lower() in _LOWER_TOKENS]
    if bool(upper) == bool(lower):
        return None
    arch: Arch = "upper" if upper else "lower"
    rest = " ".join(token for token in tokens if token.lower() not in _UPPER_TOKENS | _LOWER_TOKENS)
    stage = stage_number(rest)
    return None if stage is None else StagedModelName(arch=arch, stage=stage)


def _valid_stage(digits: str) -> int | None:
    value = int(digits)
    return value if value <= MAX_STAGE else None

