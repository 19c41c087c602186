"""Output sizes for exports: screen presets (pixels only) and 300-DPI print presets.

Print presets are stored landscape (width >= height); `output_size(key, "portrait")` swaps them.
Pixel sizes are exact: inches x 300, and A4 is 297 x 210 mm -> round(mm / 25.4 * 300).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.errors import ValidationError

#: Print presets are rendered at this resolution (what photo labs and office printers expect).
PRINT_DPI = 300
ORIENTATIONS = ("landscape", "portrait")
#: Larger sizes are refused: they would cost hundreds of MB of RAM per render.
MAX_SIDE = 12_000


@dataclass(frozen=True)
class OutputSize:
    """A named output size. `dpi` is None for screen sizes and the print resolution otherwise."""

    key: str
    label: str
    width: int
    height: int
    dpi: int | None = None

    def __post_init__(self) -> None:
        for name, value in (("width", self.width), ("height", self.height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SIDE:
                raise ValidationError(f"Output {name} {value!r} must be a whole number of pixels from 1 to {MAX_SIDE}.")
        if self.dpi is not None and (isinstance(self.dpi, bool) or not isinstance(self.dpi, int)
                                     or not 1 <= self.dpi <= 65_535):
            raise ValidationError(f"dpi {self.dpi!r} must be None (screen) or a whole number from 1 to 65535.")
        if not self.key:
            raise ValidationError("An output size needs a non-empty key.")

    @property
    def is_print(self) -> bool:
        """True for print presets (they carry a DPI that must be written into the exported file)."""
        return self.dpi is not None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, the order `compose` and OpenCV expect."""
        return self.width, self.height


def _print(key: str, label: str, width_in: float, height_in: float) -> OutputSize:
    return OutputSize(key, label, round(width_in * PRINT_DPI), round(height_in * PRINT_DPI), PRINT_DPI)


_MM_PER_INCH = 25.4

SCREEN_SIZES: dict[str, OutputSize] = {
    "1080p": OutputSize("1080p", "Full HD 1920 × 1080", 1920, 1080),
    "4k": OutputSize("4k", "4K UHD 3840 × 2160", 3840, 2160),
    "square": OutputSize("square", "Square 1080 × 1080 (social)", 1080, 1080),
}

PRINT_SIZES: dict[str, OutputSize] = {
    "4x6": _print("4x6", "4 × 6 in photo", 6, 4),
    "5x7": _print("5x7", "5 × 7 in photo", 7, 5),
    "8x10": _print("8x10", "8 × 10 in print", 10, 8),
    "a4": _print("a4", "A4 (297 × 210 mm)", 297 / _MM_PER_INCH, 210 / _MM_PER_INCH),
    "letter": _print("letter", "US Letter (11 × 8.5 in)", 11, 8.5),
}


def output_size(key: str, orientation: str = "landscape") -> OutputSize:
    """The preset named `key` in `orientation` ("landscape" or "portrait").

    Portrait swaps width and height of print sizes; screen sizes are returned unchanged because a
    screen has a fixed shape. Raises ValidationError naming the valid choices for an unknown key.
    """
    if orientation not in ORIENTATIONS:
        raise ValidationError(f"Orientation {orientation!r} is not supported; choose one of {', '.join(ORIENTATIONS)}.")
    normalized = key.strip().lower() if isinstance(key, str) else key
    if normalized in SCREEN_SIZES:
        return SCREEN_SIZES[normalized]
    if normalized in PRINT_SIZES:
        size = PRINT_SIZES[normalized]
        if orientation == "portrait":
            return replace(size, width=size.height, height=size.width)
        return size
    choices = ", ".join([*SCREEN_SIZES, *PRINT_SIZES])
    raise ValidationError(f"Unknown output size {key!r}; choose one of {choices}.")
