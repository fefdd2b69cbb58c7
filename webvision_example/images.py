"""The example's JPEGs: class-styled pictures a classifier can learn, written by seed.

Each class has a ``Style`` (``class_style``): two colours and a pattern (stripes, circles, ...);
``render_image`` paints it shifted, rotated and noisy. Pixels come from NumPy generators seeded by
(seed, stream, image), independent of the text's ``random.Random``: the same arguments give the
same bytes, with or without the images.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

MIN_SIDE, MAX_SIDE = 64, 400   # training images
VAL_SIDE = 256                 # shorter side of validation and test images
TWO_PI = 2 * math.pi


@dataclass
class Style:
    hue: float
    hue2: float
    sat: float
    val: float
    pattern: str
    freq: float
    angle: float


# --------------------------------------------------------------------------------------------
# Patterns: (x, y, frequency, phase, angle, rng) -> intensity in [0, 1] between the two colours
# --------------------------------------------------------------------------------------------

Pattern = Callable[[np.ndarray, np.ndarray, float, float, float, np.random.Generator], np.ndarray]


def _stripes(x, y, f, phase, a, r):
    return 0.5 + 0.5 * np.sin(TWO_PI * f * (x * math.cos(a) + y * math.sin(a)) + phase)


def _circles(x, y, f, phase, a, r):
    return 0.5 + 0.5 * np.sin(TWO_PI * f * np.sqrt(x * x + y * y) + phase)


def _checker(x, y, f, phase, a, r):
    return (np.floor(f * (x * math.cos(a) - y * math.sin(a)) + phase)
            + np.floor(f * (x * math.sin(a) + y * math.cos(a)) + phase)) % 2


def _gradient(x, y, f, phase, a, r):
    return np.clip(0.5 + 1.2 * (x * math.cos(a) + y * math.sin(a)), 0.0, 1.0)


def _waves(x, y, f, phase, a, r):
    return 0.5 + 0.5 * np.sin(TWO_PI * f * y + 1.5 * np.sin(TWO_PI * f * 0.5 * x) + phase)


def _dots(x, y, f, phase, a, r):
    return (np.sin(TWO_PI * f * x + phase) * np.sin(TWO_PI * f * y + phase) > 0.4).astype(np.float32)


def _blob(x, y, f, phase, a, r):
    return np.exp(-(x * x + y * y) / (2 * (0.12 + 0.1 * r.random()) ** 2))


def _grid(x, y, f, phase, a, r):
    return ((np.abs(np.sin(math.pi * f * x + phase)) < 0.25)
            | (np.abs(np.sin(math.pi * f * y + phase)) < 0.25)).astype(np.float32)


# The order is part of the output: class_style draws an index into it.
PATTERN_FUNCTIONS: dict[str, Pattern] = {
    "stripes": _stripes, "circles": _circles, "checker": _checker, "gradient": _gradient,
    "waves": _waves, "dots": _dots, "blob": _blob, "grid": _grid,
}
PATTERNS = tuple(PATTERN_FUNCTIONS)


def class_style(seed: int, index: int) -> Style:
    r = np.random.default_rng([seed, 101, index])
    hue = (index * 0.6180339887 + r.uniform(0.0, 0.08)) % 1.0
    return Style(
        hue=hue,
        hue2=(hue + r.uniform(0.25, 0.75)) % 1.0,
        sat=float(r.uniform(0.55, 1.0)),
        val=float(r.uniform(0.55, 0.95)),
        pattern=PATTERNS[int(r.integers(0, len(PATTERNS)))],
        freq=float(r.uniform(2.0, 6.0)),
        angle=float(r.uniform(0.0, math.pi)),
    )


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)),
                    dtype=np.float32) * 255.0


def render_image(style: Style, width: int, height: int, r: np.random.Generator, noise: float = 10.0):
    """An RGB PIL image: the class's two colours in its pattern, shifted and noisy."""
    from PIL import Image

    s = float(min(width, height))
    y = ((np.arange(height, dtype=np.float32) - height * r.uniform(0.3, 0.7)) / s)[:, None]
    x = ((np.arange(width, dtype=np.float32) - width * r.uniform(0.3, 0.7)) / s)[None, :]
    f = style.freq * r.uniform(0.85, 1.15)
    phase = r.uniform(0.0, 2 * math.pi)
    a = style.angle + r.normal(0.0, 0.12)
    p = PATTERN_FUNCTIONS[style.pattern](x, y, f, phase, a, r)
    p = np.broadcast_to(p, (height, width)).astype(np.float32)
    c1 = _rgb(style.hue + r.normal(0, 0.02), style.sat + r.normal(0, 0.05), style.val + r.normal(0, 0.07))
    c2 = _rgb(style.hue2 + r.normal(0, 0.02), style.sat * 0.6, 1.0 - 0.6 * style.val + r.normal(0, 0.05))
    img = c1 + (c2 - c1) * p[:, :, None]
    if noise > 0:
        block = 8
        coarse = r.normal(0.0, noise, (height // block + 1, width // block + 1, 3)).astype(np.float32)
        img += np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]
        img += r.normal(0.0, noise * 0.25, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def train_image(seed: int, key: int, style: Style):
    """(image, JPEG quality) of training image number ``key``: varied size and aspect, some grey."""
    r = np.random.default_rng([seed, 1, key])
    side = int(r.integers(MIN_SIDE, MAX_SIDE + 1))
    aspect = math.exp(r.uniform(math.log(0.5), math.log(2.0)))
    w, h = side, int(min(max(round(side * aspect), MIN_SIDE), MAX_SIDE))
    img = render_image(style, w, h, r, noise=float(r.uniform(4.0, 16.0)))
    if r.random() < 0.07:
        img = img.convert("L")
    return img, int(r.integers(75, 96))


def eval_image(seed: int, stream: int, key: int, style: Style):
    """(image, JPEG quality) of a validation (stream 2) or test (stream 3) image: shorter side 256."""
    r = np.random.default_rng([seed, stream, key])
    long_side = int(r.integers(VAL_SIDE, VAL_SIDE * 4 // 3 + 1))
    w, h = (long_side, VAL_SIDE) if r.random() < 0.6 else (VAL_SIDE, long_side)
    return render_image(style, w, h, r, noise=float(r.uniform(3.0, 8.0))), int(r.integers(75, 91))


def write_images(root: Path, seed: int, n_classes: int, train: list[str], val_labels: list[int],
                 test_labels: list[int]) -> int:
    """Write the training images of the ``train`` list lines (``<path> <class id>``) and the
    validation and test images under ``root``; returns how many."""
    from tqdm import tqdm

    styles = [class_style(seed, index) for index in range(n_classes)]
    total = len(train) + len(val_labels) + len(test_labels)
    made_dirs: set[str] = set()
    with tqdm(total=total, desc="example images", unit="img") as bar:
        for key, line in enumerate(train):
            rel, cid = line.rsplit(" ", 1)
            folder = rel.rsplit("/", 1)[0]
            if folder not in made_dirs:
                (root / folder).mkdir(parents=True, exist_ok=True)
                made_dirs.add(folder)
            img, quality = train_image(seed, key, styles[int(cid)])
            img.save(root / rel, "JPEG", quality=quality)
            bar.update()
        for stream, folder, stem, labels in ((2, "val_images_256", "val", val_labels),
                                             (3, "test_images_256", "test", test_labels)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i, cid in enumerate(labels):
                img, quality = eval_image(seed, stream, i, styles[cid])
                img.save(root / folder / f"{stem}{i + 1:06d}.jpg", "JPEG", quality=quality)
                bar.update()
    return total
