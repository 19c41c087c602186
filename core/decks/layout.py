"""Picture-area geometry shared by the PowerPoint and PDF builders (unit-free: inches or mm).

A box is (x, y, width, height) with y growing downwards. The builders give each slide a picture
area; `picture_cells` splits it into one cell per image, and `fit_box` places content of a given
pixel size inside a cell (aspect kept, centred), so both outputs arrange a slide the same way.
"""

from __future__ import annotations

import math

Box = tuple[float, float, float, float]


def fit_box(size: tuple[int, int], cell: Box) -> Box:
    """The largest box with the aspect ratio of `size` (w, h px) inside `cell`, centred in it."""
    width, height = size
    x, y, cell_w, cell_h = cell
    scale = min(cell_w / width, cell_h / height)
    fitted_w, fitted_h = width * scale, height * scale
    return x + (cell_w - fitted_w) / 2, y + (cell_h - fitted_h) / 2, fitted_w, fitted_h


def columns(area: Box, count: int, gap: float) -> list[Box]:
    """`count` equal cells side by side across `area`, `gap` apart."""
    x, y, width, height = area
    cell_w = (width - gap * (count - 1)) / count
    return [(x + index * (cell_w + gap), y, cell_w, height) for index in range(count)]


def grid_columns(count: int, area: Box, gap: float, aspect: float) -> int:
    """The column count that shows `count` images of `aspect` (w / h) largest in `area`."""
    _, _, width, height = area
    best, best_side = 1, -1.0
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        cell_w = (width - gap * (cols - 1)) / cols
        cell_h = (height - gap * (rows - 1)) / rows
        if cell_w <= 0 or cell_h <= 0:
            continue
        side = min(cell_w, cell_h * aspect)  # fitted image width in that cell
        if side > best_side + 1e-9:  # ties keep fewer columns: rows read more naturally
            best, best_side = cols, side
    return best


def grid(area: Box, count: int, gap: float, aspect: float) -> list[Box]:
    """`count` cells filled row by row, the layout chosen by `grid_columns`; the grid is centred."""
    x, y, width, height = area
    cols = grid_columns(count, area, gap, aspect)
    rows = math.ceil(count / cols)
    cell_w = (width - gap * (cols - 1)) / cols
    cell_h = (height - gap * (rows - 1)) / rows
    # Shrink cells to the image aspect so the gaps stay `gap` wide instead of growing with the padding.
    cell_w, cell_h = min(cell_w, cell_h * aspect), min(cell_h, cell_w / aspect)
    left = x + (width - (cols * cell_w + (cols - 1) * gap)) / 2
    top = y + (height - (rows * cell_h + (rows - 1) * gap)) / 2
    return [(left + (i % cols) * (cell_w + gap), top + (i // cols) * (cell_h + gap), cell_w, cell_h)
            for i in range(count)]


def picture_cells(kind: str, sizes: list[tuple[int, int]], area: Box, gap: float) -> list[Box]:
    """One cell per image for a slide of `kind`: two comparison images side by side, a stage grid,
    or the whole area for a single image."""
    if kind == "comparison" and len(sizes) == 2:
        return columns(area, 2, gap)
    if kind == "stage_grid":
        aspect = max(w / h for w, h in sizes)  # the widest image decides, so none is clipped
        return grid(area, len(sizes), gap, aspect)
    return [area] * len(sizes)
