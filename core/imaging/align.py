"""Alignment of a BEFORE photo onto a PREDICTED frame: a similarity transform (scale, rotation,
translation), found automatically or set by hand, stored per pair as a small dict.

Convention: `Alignment.matrix(before_size)` maps BEFORE pixel coordinates to PREDICTED pixel
coordinates (x right, y down, pixel centres at integers): rotate by `rotation_deg` about the before
image centre c = ((w - 1) / 2, (h - 1) / 2) (positive = counter-clockwise as seen on screen, the
cv2.getRotationMatrix2D convention), scale by `scale` about that centre, then shift by (dx, dy)
predicted pixels. The identity maps before pixel (x, y) onto predicted pixel (x, y).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from core.errors import ValidationError
from core.imaging import _check_rgb

#: auto_align works on copies whose long side is at most this (speed; ECC restores sub-pixel accuracy).
WORK_SIDE = 800
MIN_SIDE = 32
SCALE_RANGE = (0.2, 5.0)

Crop = tuple[float, float, float, float]


def _finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"{name} {value!r} must be a finite number.")
    return float(value)


@dataclass(frozen=True)
class Alignment:
    """A similarity transform mapping BEFORE onto PREDICTED (see the module docstring).

    crop is an optional normalised (x, y, w, h) of the predicted frame to show (apply it to both
    images with `apply_crop`); confidence is 0..1 from `auto_align` and None for manual alignments.
    """

    scale: float = 1.0
    rotation_deg: float = 0.0
    dx: float = 0.0
    dy: float = 0.0
    crop: Crop | None = None
    confidence: float | None = None

    def __post_init__(self) -> None:
        scale = _finite("scale", self.scale)
        if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
            raise ValidationError(f"scale {scale:g} is outside {SCALE_RANGE[0]:g}–{SCALE_RANGE[1]:g}.")
        rotation = _finite("rotation_deg", self.rotation_deg)
        if not -180.0 <= rotation <= 180.0:
            raise ValidationError(f"rotation_deg {rotation:g} is outside -180–180.")
        _finite("dx", self.dx)
        _finite("dy", self.dy)
        if self.crop is not None:
            crop = self.crop
            if not isinstance(crop, tuple | list) or len(crop) != 4:
                raise ValidationError("crop must be (x, y, w, h) as fractions of the image, or None.")
            x, y, w, h = (_finite(name, v) for name, v in zip(("crop x", "crop y", "crop w", "crop h"), crop,
                                                                 strict=True))
            if not (0 <= x < 1 and 0 <= y < 1 and 0 < w <= 1 and 0 < h <= 1):
                raise ValidationError(f"crop {tuple(crop)} must have x, y in 0–1 and w, h in (0, 1].")
            if x + w > 1 + 1e-9 or y + h > 1 + 1e-9:
                raise ValidationError(f"crop {tuple(crop)} reaches outside the image (x + w and y + h must be ≤ 1).")
            object.__setattr__(self, "crop", (x, y, w, h))
        if self.confidence is not None:
            confidence = _finite("confidence", self.confidence)
            if not 0.0 <= confidence <= 1.0:
                raise ValidationError(f"confidence {confidence:g} is outside 0–1.")

    def matrix(self, before_size: tuple[int, int]) -> np.ndarray:
        """The 2x3 float64 matrix for cv2.warpAffine(before, M, predicted_size); before_size is (w, h)."""
        width, height = before_size
        centre = ((width - 1) / 2.0, (height - 1) / 2.0)
        matrix = cv2.getRotationMatrix2D(centre, self.rotation_deg, self.scale)
        matrix[0, 2] += self.dx
        matrix[1, 2] += self.dy
        return matrix

    @classmethod
    def from_matrix(cls, matrix: np.ndarray, before_size: tuple[int, int], *,
                    confidence: float | None = None) -> Alignment:
        """The nearest similarity to a 2x3 before->predicted matrix (any shear is averaged away)."""
        a, b, c, d = float(matrix[0, 0]), float(matrix[0, 1]), float(matrix[1, 0]), float(matrix[1, 1])
        # Closest [[s cos, s sin], [-s sin, s cos]] in the least-squares sense.
        alpha, beta = (a + d) / 2.0, (b - c) / 2.0
        scale = math.hypot(alpha, beta)
        rotation = math.degrees(math.atan2(beta, alpha))
        width, height = before_size
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        # matrix() puts the centre at c + (dx, dy): read dx, dy from where `matrix` sends the centre.
        dx = alpha * cx + beta * cy + float(matrix[0, 2]) - cx
        dy = -beta * cx + alpha * cy + float(matrix[1, 2]) - cy
        return cls(scale, rotation, dx, dy, confidence=confidence)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (crop as a list) for storing with the before/predicted pair."""
        data = asdict(self)
        data["crop"] = list(self.crop) if self.crop is not None else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alignment:
        """Rebuild from `to_dict` output; missing keys take the defaults, unknown keys are refused."""
        if not isinstance(data, dict):
            raise ValidationError("A stored alignment must be a dict.")
        unknown = set(data) - {"scale", "rotation_deg", "dx", "dy", "crop", "confidence"}
        if unknown:
            raise ValidationError(f"Unknown alignment field(s): {', '.join(sorted(unknown))}.")
        values = dict(data)
        if isinstance(values.get("crop"), list):
            values["crop"] = tuple(values["crop"])
        return cls(**values)


# --------------------------------------------------------------------------- applying

def apply_alignment(before: np.ndarray, alignment: Alignment, size: tuple[int, int],
                    background: tuple[int, int, int] | None = None) -> np.ndarray:
    """`before` warped into the predicted frame: an RGB array of exactly `size` (w, h).

    Areas the before image does not cover repeat its edge pixels, or take `background` when given.
    The crop is not applied here (use `apply_crop` on both images so they stay registered).
    """
    _check_rgb(before)
    if not isinstance(alignment, Alignment):
        raise ValidationError("apply_alignment needs an Alignment.")
    width, height = _check_size(size)
    matrix = alignment.matrix((before.shape[1], before.shape[0]))
    if background is None:
        return cv2.warpAffine(before, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return cv2.warpAffine(before, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=tuple(int(c) for c in background))


def crop_box(crop: Crop | None, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The normalised crop as whole pixels (x0, y0, x1, y1) of a `size` (w, h) image (at least 1 px)."""
    width, height = size
    if crop is None:
        return 0, 0, width, height
    x, y, w, h = crop
    x0, y0 = min(width - 1, round(x * width)), min(height - 1, round(y * height))
    return x0, y0, max(x0 + 1, min(width, round((x + w) * width))), max(y0 + 1, min(height, round((y + h) * height)))


def apply_crop(rgb: np.ndarray, alignment: Alignment) -> np.ndarray:
    """`rgb` (an image in the predicted frame) cut to `alignment.crop`; the whole image when None."""
    _check_rgb(rgb)
    x0, y0, x1, y1 = crop_box(alignment.crop, (rgb.shape[1], rgb.shape[0]))
    return rgb[y0:y1, x0:x1].copy()


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(size, tuple | list) or len(size) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in size)):
        raise ValidationError(f"size {size!r} must be (width, height) in whole px.")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------- automatic alignment

def _work_copy(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale float32 copy with long side <= WORK_SIDE, and the 3x3 map full -> work pixel coords."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    height, width = gray.shape
    factor = min(1.0, WORK_SIDE / max(height, width))
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    if size != (width, height):
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    # cv2.resize aligns pixel *centres*: x_work = (x + 0.5) * f - 0.5, per axis with the rounded size.
    fx, fy = size[0] / width, size[1] / height
    to_work = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
    return gray.astype(np.float32), to_work


def _h(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


def _feature_estimate(before: np.ndarray, predicted: np.ndarray) -> np.ndarray | None:
    """ORB + ratio test + RANSAC similarity (cv2.estimateAffinePartial2D) in work coordinates."""
    orb = cv2.ORB_create(nfeatures=2500, fastThreshold=10)
    kp_b, des_b = orb.detectAndCompute(before.astype(np.uint8), None)
    kp_p, des_p = orb.detectAndCompute(predicted.astype(np.uint8), None)
    if des_b is None or des_p is None or len(kp_b) < 8 or len(kp_p) < 8:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_b, des_p, k=2)
    # Lowe's ratio test: keep matches clearly better than the runner-up.
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]
    if len(good) < 8:
        return None
    src = np.float32([kp_b[m.queryIdx].pt for m in good])
    dst = np.float32([kp_p[m.trainIdx].pt for m in good])
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0,
                                                  maxIters=3000, confidence=0.995, refineIters=10)
    if matrix is None or inliers is None or int(inliers.sum()) < 8:
        return None
    return matrix if _plausible(matrix) else None


def _plausible(matrix: np.ndarray) -> bool:
    scale = math.hypot(matrix[0, 0], matrix[1, 0])
    return bool(np.isfinite(matrix).all()) and SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]


def _stable_mask(before: np.ndarray, predicted: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Before-frame pixels that already agree with predicted under `matrix` (uint8 0/255).

    The predicted frame differs from the before photo where the teeth moved; ECC over those pixels
    drifts (an affine fit happily "explains" an arch expansion as a stretch), so refinement only
    looks at what stayed the same: lips, face, background.
    """
    back = cv2.warpAffine(predicted, matrix, (before.shape[1], before.shape[0]),
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=-1.0)
    valid = back >= 0
    if valid.mean() < 0.05:
        return np.zeros(before.shape, np.uint8)
    difference = np.abs(cv2.GaussianBlur(back, (0, 0), 2.0) - cv2.GaussianBlur(before, (0, 0), 2.0))
    # 3 robust standard deviations (MAD) of the differences, at least 3 grey levels.
    threshold = max(3.0, 3.0 * 1.4826 * float(np.median(difference[valid])))
    mask = (valid & (difference < threshold)).astype(np.uint8) * 255
    return cv2.erode(mask, np.ones((5, 5), np.uint8))


def _ecc_refine(before: np.ndarray, predicted: np.ndarray, matrix: np.ndarray,
                mask: np.ndarray | None) -> np.ndarray | None:
    """Refine a before->predicted matrix by ECC (affine, on `mask` pixels), projected to a similarity."""
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 1e-5)
    warp = matrix.astype(np.float32).copy()
    try:
        # ECC finds W with predicted(W x) ~ before(x): exactly our before->predicted mapping.
        if mask is None:
            _, warp = cv2.findTransformECC(before, predicted, warp, cv2.MOTION_AFFINE, criteria, None, 5)
        else:
            everywhere = np.full(predicted.shape, 255, np.uint8)
            _, warp = cv2.findTransformECCWithMask(before, predicted, mask, everywhere, warp, cv2.MOTION_AFFINE,
                                                   criteria, 5)
    except cv2.error:
        return None  # did not converge (unrelated images, flat areas): keep the other candidates
    refined = _similarity(warp.astype(np.float64))
    return refined if _plausible(refined) else None


def _similarity(matrix: np.ndarray) -> np.ndarray:
    alpha, beta = (matrix[0, 0] + matrix[1, 1]) / 2.0, (matrix[0, 1] - matrix[1, 0]) / 2.0
    return np.array([[alpha, beta, matrix[0, 2]], [-beta, alpha, matrix[1, 2]]], np.float64)


def _bandpass(gray: np.ndarray) -> np.ndarray:
    # Difference of Gaussians: keeps fine structure (edges, texture), drops lighting and flat areas.
    return cv2.GaussianBlur(gray, (0, 0), 1.0) - cv2.GaussianBlur(gray, (0, 0), 3.0)


_TILES = (6, 4)


def _score(before: np.ndarray, predicted_bp: np.ndarray, matrix: np.ndarray) -> float:
    """Confidence that `matrix` registers before onto predicted, 0..1 (see auto_align)."""
    height, width = predicted_bp.shape
    warped = _bandpass(cv2.warpAffine(before, matrix, (width, height), flags=cv2.INTER_LINEAR))
    covered = cv2.warpAffine(np.full(before.shape, 255, np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST)
    covered = cv2.erode(covered, np.ones((7, 7), np.uint8)) > 0  # the band-pass is unreliable at the border
    overlap = float(covered.mean())
    if overlap < 0.05:
        return 0.0
    correlations: list[float] = []
    xs = np.linspace(0, width, _TILES[0] + 1).astype(int)
    ys = np.linspace(0, height, _TILES[1] + 1).astype(int)
    for y0, y1 in itertools.pairwise(ys):
        for x0, x1 in itertools.pairwise(xs):
            valid = covered[y0:y1, x0:x1]
            if valid.mean() < 0.5:
                continue
            a, b = warped[y0:y1, x0:x1][valid], predicted_bp[y0:y1, x0:x1][valid]
            energy = float(np.sqrt((a * a).sum() * (b * b).sum()))
            # Flat tiles (sky-like background, blown highlights) say nothing about alignment.
            if energy <= 0 or min(a.std(), b.std()) < 0.5:
                continue
            correlations.append(float((a * b).sum()) / energy)
    if len(correlations) < 3:
        a, b = warped[covered], predicted_bp[covered]
        energy = float(np.sqrt((a * a).sum() * (b * b).sum()))
        correlations = [float((a * b).sum()) / energy if energy > 0 else 0.0]
    return max(0.0, min(1.0, float(np.median(correlations)))) * min(1.0, overlap / 0.5)


def auto_align(before: np.ndarray, predicted: np.ndarray) -> Alignment:
    """Estimate the similarity mapping `before` onto `predicted` (sizes may differ). Never raises for
    unrelated content: it then returns its best guess (usually the identity) with a low confidence.

    Method, on grayscale copies with the long side <= 800 px:
    1. ORB features, Lowe ratio test, RANSAC similarity (cv2.estimateAffinePartial2D): robust to
       the teeth having moved, accurate to ~0.3 px.
    2. ECC refinement (cv2.findTransformECCWithMask, MOTION_AFFINE projected to a similarity) over
       the pixels that already agree, i.e. not the moved teeth: accurate to ~0.05 px. Measured on
       synthetic pairs with moved teeth, whole-image ECC drifted by up to 17 px; masked ECC did not.
    3. The identity (centres coincide, widths matched) is a fall-back candidate; the candidate with
       the best score wins, ECC when it scores within 0.01 of the best (it is the more precise).

    confidence (= the score) is the median, over a 6 x 4 grid of tiles with texture, of the
    normalised cross-correlation of band-pass (difference-of-Gaussians) filtered images, times
    min(1, overlap / 0.5). Band-pass correlation drops to ~0 once structures are misaligned by a
    few px, and the median ignores the minority of tiles where the teeth changed. Same scene,
    aligned: 0.8-1.0; unrelated images: ~0-0.1. Treat < 0.5 as "check the alignment by hand".
    """
    _check_rgb(before)
    _check_rgb(predicted)
    if min(before.shape[:2]) < MIN_SIDE or min(predicted.shape[:2]) < MIN_SIDE:
        raise ValidationError(f"Images to align must be at least {MIN_SIDE} px on each side.")
    gray_b, to_work_b = _work_copy(before)
    gray_p, to_work_p = _work_copy(predicted)
    predicted_bp = _bandpass(gray_p)

    # Identity in full-resolution terms: centres coincide, the before width scaled to the predicted width.
    ratio = predicted.shape[1] / before.shape[1]
    centre_shift = np.array([[1.0, 0.0, (predicted.shape[1] - before.shape[1] * ratio) / 2.0],
                             [0.0, 1.0, (predicted.shape[0] - before.shape[0] * ratio) / 2.0], [0.0, 0.0, 1.0]])
    identity_full = centre_shift @ np.diag([ratio, ratio, 1.0])
    identity = (to_work_p @ identity_full @ np.linalg.inv(to_work_b))[:2]

    features = _feature_estimate(gray_b, gray_p)
    candidates = {"identity": identity}
    if features is not None:
        candidates["features"] = features
        refined = _ecc_refine(gray_b, gray_p, features, _stable_mask(gray_b, gray_p, features))
    else:
        refined = _ecc_refine(gray_b, gray_p, identity, None)
    if refined is not None:
        candidates["ecc"] = refined
    scores = {name: _score(gray_b, predicted_bp, matrix) for name, matrix in candidates.items()}
    best = max(scores, key=lambda name: scores[name])
    if "ecc" in scores and scores["ecc"] >= scores[best] - 0.01:
        best = "ecc"

    # Back to full-resolution pixel coordinates.
    full = (np.linalg.inv(to_work_p) @ _h(candidates[best]) @ to_work_b)[:2]
    return Alignment.from_matrix(full, (before.shape[1], before.shape[0]), confidence=round(scores[best], 4))
