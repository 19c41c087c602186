"""Size and shape limits applied to every import. One frozen value, passed down explicitly."""

from __future__ import annotations

from dataclasses import dataclass, fields

from core.errors import ValidationError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True)
class ImportLimits:
    """Upper bounds for untrusted input; all must be positive integers.

    max_files: entries in one ZIP (directories and junk included: they cost parsing too).
    max_total_bytes: uncompressed bytes of one ZIP, summed over the members that are read (2 GiB).
    max_entry_bytes: uncompressed bytes of one ZIP member (200 MiB).
    max_compression_ratio: uncompressed / compressed, per member and for the whole ZIP (100).
    max_image_pixels: width × height of one still image (50 MP ≈ 8K × 6K).
    max_video_seconds: length of one screen recording (10 minutes).
    max_video_width / max_video_height: frame size of a recording (4K UHD, either orientation).
    max_video_fps: frame rate of a recording.
    max_mesh_triangles / max_mesh_bytes: one STL/PLY/OBJ model (2 M triangles, 300 MiB).
    """

    max_files: int = 5000
    max_total_bytes: int = 2 * GIB
    max_entry_bytes: int = 200 * MIB
    max_compression_ratio: int = 100
    max_image_pixels: int = 50_000_000
    max_video_seconds: int = 600
    max_video_width: int = 3840
    max_video_height: int = 2160
    max_video_fps: int = 120
    max_mesh_triangles: int = 2_000_000
    max_mesh_bytes: int = 300 * MIB

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValidationError(f"ImportLimits.{field.name} is {value!r}; it must be a positive whole number.")


DEFAULT_LIMITS = ImportLimits()
