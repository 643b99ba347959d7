"""The synthetic captioned-shapes domain the testbed CLIP is trained on.

A sample is one coloured shape drawn with PIL on a 64x64 near-white canvas, described by four
attributes: colour (6), shape (4), size (2) and horizontal position (3). Captions come from a few
templates ("a large red circle on the left", "a photo of a blue star", ...). Everything is a pure
function of ``(stream, seed, index)``: the same arguments give the same attributes, caption and
pixels (``random.Random`` seeded with a string is stable across Python 3 versions and machines).

Streams keep data sets apart: training uses ``"train"``, the golden set ``"golden"``, held-out
checks ``"heldout"``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import torch

IMAGE_SIZE = 64

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 190),
    "orange": (245, 130, 30),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SIZES: dict[str, float] = {"small": 7.0, "large": 12.5}  # radius in pixels
POSITIONS: dict[str, float] = {"left": 0.25, "middle": 0.5, "right": 0.75}  # centre x / width
POSITION_PHRASES: dict[str, str] = {"left": "on the left", "middle": "in the middle", "right": "on the right"}

#: Caption templates; ``{pos}`` is a phrase from POSITION_PHRASES. Index 0 is the canonical caption.
TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {pos}",
    "a {colour} {shape} {pos}",
    "a {size} {colour} {shape}",
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a photo of a {size} {colour} {shape} {pos}",
    "there is a {size} {colour} {shape} {pos}",
    "{pos}, a {size} {colour} {shape}",
)
#: The prompt used for zero-shot colour x shape classification.
ZERO_SHOT_TEMPLATE = "a photo of a {colour} {shape}"


@dataclass(frozen=True)
class ShapeSpec:
    colour: str
    shape: str
    size: str
    position: str

    @property
    def label(self) -> str:
        """The colour x shape class, e.g. ``"red circle"``."""
        return f"{self.colour} {self.shape}"

    def caption(self, template: int = 0) -> str:
        return TEMPLATES[template].format(
            size=self.size, colour=self.colour, shape=self.shape, pos=POSITION_PHRASES[self.position]
        )

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Sample:
    spec: ShapeSpec
    caption: str
    image: Image.Image


def classes() -> list[tuple[str, str]]:
    """The 24 (colour, shape) classes in a fixed order."""
    return list(itertools.product(COLOURS, SHAPES))


def class_prompts(template: str = ZERO_SHOT_TEMPLATE) -> list[str]:
    return [template.format(colour=c, shape=s) for c, s in classes()]


def _rng(stream: str, seed: int, index: int) -> random.Random:
    return random.Random(f"clip-shapes:{stream}:{seed}:{index}")  # noqa: S311 - data, not crypto


def _polygon(cx: float, cy: float, r: float, shape: str, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (math.pi / 4 + k * math.pi / 2 for k in range(4))]
        pts = [(x * 0.9, y * 0.9) for x, y in pts]  # side ~ 1.27 r: similar area to the circle
    elif shape == "triangle":
        pts = [
            (r * 1.15 * math.cos(a), r * 1.15 * math.sin(a))
            for a in (-math.pi / 2 + k * 2 * math.pi / 3 for k in range(3))
        ]
    elif shape == "star":
        pts = []
        for k in range(10):
            rad = r * 1.15 if k % 2 == 0 else r * 0.48
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    else:
        raise ValueError(f"not a polygon shape: {shape}")
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def render(spec: ShapeSpec, rng: random.Random) -> Image.Image:
    """Draw ``spec``; ``rng`` supplies the small jitter (background, hue, offset, rotation, scale)."""
    bg = tuple(rng.randint(232, 255) for _ in range(3))
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), bg)
    draw = ImageDraw.Draw(img)
    base = COLOURS[spec.colour]
    fill = tuple(max(0, min(255, c + rng.randint(-18, 18))) for c in base)
    r = SIZES[spec.size] * rng.uniform(0.9, 1.1)
    cx = POSITIONS[spec.position] * IMAGE_SIZE + rng.uniform(-2.5, 2.5)
    cy = IMAGE_SIZE / 2 + rng.uniform(-6.0, 6.0) * (1.0 if spec.size == "small" else 0.5)
    angle = math.radians(rng.uniform(-12.0, 12.0))
    if spec.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(_polygon(cx, cy, r, spec.shape, angle), fill=fill)
    return img


def random_spec(rng: random.Random) -> ShapeSpec:
    return ShapeSpec(
        colour=rng.choice(list(COLOURS)),
        shape=rng.choice(SHAPES),
        size=rng.choice(list(SIZES)),
        position=rng.choice(list(POSITIONS)),
    )


def make_sample(
    seed: int,
    index: int,
    *,
    stream: str = "train",
    spec: ShapeSpec | None = None,
    template: int | None = 0,
) -> Sample:
    """Sample ``index`` of ``(stream, seed)``. ``spec`` fixes the attributes (else drawn at random);
    ``template`` picks the caption template (``None``: a random one)."""
    rng = _rng(stream, seed, index)
    if spec is None:
        spec = random_spec(rng)
    t = rng.randrange(len(TEMPLATES)) if template is None else template
    return Sample(spec=spec, caption=spec.caption(t), image=render(spec, rng))


def samples(
    seed: int, start: int, count: int, *, stream: str = "train", template: int | None = None
) -> list[Sample]:
    return [make_sample(seed, i, stream=stream, template=template) for i in range(start, start + count)]


def balanced_specs(count: int, seed: int, *, stream: str = "golden") -> list[ShapeSpec]:
    """``count`` specs cycling through the 24 colour x shape classes (class counts differ by at most
    one); size and position drawn deterministically from ``(stream, seed)``."""
    rng = _rng(f"{stream}-specs", seed, 0)
    cls = classes()
    out: list[ShapeSpec] = []
    for i in range(count):
        colour, shape = cls[i % len(cls)]
        out.append(
            ShapeSpec(colour, shape, size=rng.choice(list(SIZES)), position=rng.choice(list(POSITIONS)))
        )
    return out


def balanced_samples(count: int, seed: int, *, stream: str = "golden") -> Iterator[Sample]:
    for i, spec in enumerate(balanced_specs(count, seed, stream=stream)):
        yield make_sample(seed, i, stream=stream, spec=spec, template=0)


def to_tensor_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    """Images -> normalised float tensor [N, 3, 64, 64], equal to open_clip's eval preprocess for
    64x64 RGB input (resize/crop are identities; OpenAI CLIP mean/std)."""
    import numpy as np
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    arr = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]) / 255.0
    t = torch.from_numpy(arr).permute(0, 3, 1, 2)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (t - mean) / std
