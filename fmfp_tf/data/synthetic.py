"""The embedded default dataset: 43 procedurally drawn, traffic-sign-like classes.

Nothing is downloaded: every image is drawn from a seed, so a fresh offline machine can train
and evaluate at once. Each class is a sign (an outline shape, a colour scheme, a glyph) in the
spirit of GTSRB's 43 classes; several classes share shape and colours and differ only in the
glyph (like the speed limits), which is what makes the task non-trivial. Every image varies in
scale, rotation, shear (a cheap perspective), position, colours, lighting (brightness, gamma,
a shadow ramp), background (a smooth random field with a random edge) and sensor noise, and is
anti-aliased by drawing at twice the resolution.
"""
import numpy as np

from fmfp_tf.data.images import Arrays
from fmfp_tf.data.registry import Dataset

# 3x5 bitmap digits
_DIGITS = {
    "0": ["111", "101", "101", "101", "111"], "1": ["010", "110", "010", "010", "111"],
    "2": ["111", "001", "111", "100", "111"], "3": ["111", "001", "011", "001", "111"],
    "4": ["101", "101", "111", "001", "001"], "5": ["111", "100", "111", "001", "111"],
    "6": ["111", "100", "111", "101", "111"], "7": ["111", "001", "010", "010", "010"],
    "8": ["111", "101", "111", "101", "111"], "9": ["111", "101", "111", "001", "111"],
}
_FONT = {k: np.array([[c == "1" for c in row] for row in v]) for k, v in _DIGITS.items()}

# colour schemes: (border, inner, glyph) in RGB [0, 1]
_RED, _WHITE, _BLACK = (0.8, 0.1, 0.12), (0.95, 0.95, 0.92), (0.08, 0.08, 0.1)
_BLUE, _YELLOW, _GREY = (0.1, 0.3, 0.75), (0.95, 0.75, 0.1), (0.55, 0.55, 0.55)
SCHEMES = {
    "prohibitory": (_RED, _WHITE, _BLACK),
    "no_entry": (_RED, _RED, _WHITE),
    "warning": (_RED, _WHITE, _BLACK),
    "mandatory": (_WHITE, _BLUE, _WHITE),
    "priority": (_WHITE, _YELLOW, _BLACK),
    "stop": (_WHITE, _RED, _WHITE),
    "yield": (_RED, _WHITE, _BLACK),
    "info": (_WHITE, _BLUE, _WHITE),
    "end": (_GREY, _WHITE, _BLACK),
}


def _class_table():
    table = [("circle", "prohibitory", f"num{n}") for n in (20, 30, 40, 50, 60, 70, 80, 90)]
    table += [("circle", "end", "slash"), ("circle", "no_entry", "bar"),
              ("circle", "prohibitory", "dot")]
    table += [("triangle", "warning", g) for g in (
        "excl", "arrow_left", "arrow_right", "arrow_up", "cross", "dot", "ring", "bar", "slash",
        "vbar", "chevron", "tee")]
    table += [("diamond", "priority", "none"), ("octagon", "stop", "bar"),
              ("inv_triangle", "yield", "none")]
    table += [("circle", "mandatory", g) for g in (
        "arrow_left", "arrow_right", "arrow_up", "dot", "ring", "bar", "cross", "vbar")]
    table += [("square", "info", g) for g in ("arrow_up", "dot", "bar", "ring", "excl")]
    table += [("circle", "end", g) for g in ("none", "bar", "dot", "arrow_up")]
    return table


CLASSES = _class_table()
NUM_CLASSES = len(CLASSES)
CLASS_NAMES = [f"{shape}/{scheme}/{glyph}" for shape, scheme, glyph in CLASSES]
assert NUM_CLASSES == 43 and len(set(CLASSES)) == 43

# polygons as (outward normal angles in degrees, apothem); the shape is {rho <= 1}
_POLYGONS = {
    "triangle": ((-90, 30, 150), 0.55),
    "inv_triangle": ((90, 210, 330), 0.55),
    "octagon": (tuple(22.5 + 45 * k for k in range(8)), 0.92),
    "diamond": ((45, 135, 225, 315), 0.72),
    "square": ((0, 90, 180, 270), 0.82),
}
_INNER = 0.78  # rho below which the inner colour starts (the rest of the sign is border)


def _rho(shape, u, v):
    if shape == "circle":
        return np.sqrt(u * u + v * v)
    angles, apothem = _POLYGONS[shape]
    rad = np.deg2rad(angles)
    return np.max(np.stack([u * np.cos(a) + v * np.sin(a) for a in rad]), axis=0) / apothem


def _digits(text, gu, gv):
    """Glyph pixels of a string of digits laid side by side in the box [-1, 1]^2."""
    n = len(text)
    out = np.zeros(gu.shape, bool)
    cell = 2.0 / n
    for k, char in enumerate(text):
        left = -1.0 + k * cell + 0.08 * cell
        width = cell * 0.84
        col = np.floor((gu - left) / width * 3).astype(int)
        row = np.floor((1.0 - gv) / 2.0 * 5).astype(int)
        valid = (col >= 0) & (col < 3) & (row >= 0) & (row < 5)
        out |= valid & _FONT[char][np.clip(row, 0, 4), np.clip(col, 0, 2)]
    return out


def _arrow(gu, gv, direction):
    if direction == "left":
        gu = -gu
    if direction == "up":
        gu, gv = gv, -gu
    shaft = (gu > -0.8) & (gu < 0.2) & (np.abs(gv) < 0.17)
    head = (gu >= 0.1) & (gu < 0.8) & (np.abs(gv) < (0.8 - gu) * 0.9)
    return shaft | head


def _glyph(name, gu, gv):
    r = np.sqrt(gu * gu + gv * gv)
    if name == "none":
        return np.zeros(gu.shape, bool)
    if name.startswith("num"):
        return _digits(name[3:], gu, gv * 1.3)
    if name.startswith("arrow_"):
        return _arrow(gu, gv, name[6:])
    shapes = {
        "bar": (np.abs(gv) < 0.2) & (np.abs(gu) < 0.75),
        "vbar": (np.abs(gu) < 0.18) & (np.abs(gv) < 0.75),
        "dot": r < 0.42,
        "ring": (r > 0.35) & (r < 0.62),
        "slash": (np.abs(gu + gv) < 0.25) & (r < 0.9),
        "cross": ((np.abs(gu - gv) < 0.22) | (np.abs(gu + gv) < 0.22)) & (r < 0.85),
        "excl": ((np.abs(gu) < 0.14) & (gv > -0.2) & (gv < 0.8))
        | ((np.abs(gu) < 0.14) & (gv > -0.75) & (gv < -0.45)),
        "chevron": (np.abs(gv - (0.6 - np.abs(gu) * 1.2)) < 0.22) & (np.abs(gu) < 0.7),
        "tee": ((np.abs(gv - 0.5) < 0.17) & (np.abs(gu) < 0.7))
        | ((np.abs(gu) < 0.16) & (gv < 0.5) & (gv > -0.8)),
    }
    return shapes[name]


def _upsample_matrix(out_size, in_size):
    """Linear interpolation weights (out_size, in_size)."""
    positions = np.linspace(0, in_size - 1, out_size)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    weight = positions - low
    matrix = np.zeros((out_size, in_size))
    matrix[np.arange(out_size), low] += 1 - weight
    matrix[np.arange(out_size), high] += weight
    return matrix


def _draw_chunk(labels, height, width, rng):
    n = len(labels)
    sh, sw = 2 * height, 2 * width  # drawn at twice the resolution, then averaged
    ys = (np.arange(sh) + 0.5) / sh * 2 - 1
    xs = (np.arange(sw) + 0.5) / sw * 2 - 1
    aspect = width / height
    px = np.broadcast_to(xs[None, None, :] * aspect, (1, sh, sw))
    py = np.broadcast_to(-ys[None, :, None], (1, sh, sw))

    # background: a smooth random colour field plus one random straight edge
    grid = rng.uniform(0.05, 0.85, (n, 4, 4, 3))
    rows = np.matmul(_upsample_matrix(sh, 4), grid.reshape(n, 4, 12)).reshape(n, sh, 4, 3)
    field = np.matmul(_upsample_matrix(sw, 4), rows).astype(np.float32)
    edge_angle = rng.uniform(0, np.pi, (n, 1, 1))
    edge_offset = rng.uniform(-1, 1, (n, 1, 1))
    side = (px * np.cos(edge_angle) + py * np.sin(edge_angle)) > edge_offset
    edge_shade = rng.uniform(0.6, 1.3, (n, 1, 1, 1))
    image = np.where(side[..., None], field * edge_shade, field)

    # geometry of the sign: inverse of scale / anisotropy / shear / rotation / translation
    scale = rng.uniform(0.62, 0.92, n)
    stretch = rng.uniform(0.82, 1.18, n)
    shear = rng.uniform(-0.18, 0.18, n)
    angle = np.deg2rad(rng.uniform(-12, 12, n))
    cx, cy = rng.uniform(-0.14, 0.14, n), rng.uniform(-0.14, 0.14, n)
    dx = px - cx[:, None, None]
    dy = py - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    ru, rv = cos * dx + sin * dy, -sin * dx + cos * dy
    rv = rv / (scale * stretch)[:, None, None]
    ru = ru / (scale / stretch)[:, None, None] - shear[:, None, None] * rv

    colour_jitter = rng.uniform(0.85, 1.15, (n, 3, 1, 1, 3))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        shape, scheme, glyph = CLASSES[label]
        u, v = ru[members], rv[members]
        rho = _rho(shape, u, v)[..., None]
        border, inner, glyph_colour = (
            np.clip(np.asarray(c) * colour_jitter[members, k], 0, 1)
            for k, c in enumerate(SCHEMES[scheme])
        )
        glyph_scale = 0.42 if "triangle" in shape else 0.58
        offset = -0.12 if shape == "triangle" else (0.12 if shape == "inv_triangle" else 0.0)
        mark = _glyph(glyph, u / glyph_scale, (v - offset) / glyph_scale)[..., None]
        img = np.where(rho <= 1.0, border, image[members])
        img = np.where(rho <= _INNER, inner, img)
        image[members] = np.where(mark & (rho <= _INNER), glyph_colour, img)

    image = image.reshape(n, height, 2, width, 2, 3).mean(axis=(2, 4))
    # lighting: brightness, gamma, a shadow ramp; then sensor noise
    brightness = rng.uniform(0.5, 1.2, (n, 1, 1, 1))
    gamma = rng.uniform(0.8, 1.25, (n, 1, 1, 1))
    ramp_angle = rng.uniform(0, 2 * np.pi, (n, 1, 1, 1))
    yy = np.linspace(-1, 1, height)[None, :, None, None]
    xx = np.linspace(-1, 1, width)[None, None, :, None]
    ramp = rng.uniform(0, 0.3, (n, 1, 1, 1)) * (xx * np.cos(ramp_angle) + yy * np.sin(ramp_angle))
    image = np.clip(image, 0, 1) ** gamma * brightness * (1 + ramp)
    image = image + rng.normal(0, 1, image.shape) * rng.uniform(0.01, 0.05, (n, 1, 1, 1))
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def generate(num_examples, image_size=(32, 32), seed=0, chunk=512):
    """(uint8 images (N, H, W, 3), int32 labels (N,)): balanced classes, deterministic for a seed.

    Example:

    >>> images, labels = generate(86, (32, 32), seed=0)
    >>> images.shape, images.dtype.name, sorted(set(labels.tolist())) == list(range(43))
    ((86, 32, 32, 3), 'uint8', True)
    """
    height, width = image_size
    rng = np.random.default_rng(seed)
    labels = np.arange(num_examples, dtype=np.int32) % NUM_CLASSES
    rng.shuffle(labels)
    images = np.empty((num_examples, height, width, 3), np.uint8)
    for start in range(0, num_examples, chunk):
        stop = min(start + chunk, num_examples)
        chunk_rng = np.random.default_rng([seed, start])
        images[start:stop] = _draw_chunk(labels[start:stop], height, width, chunk_rng)
    return images, labels


SPLIT_SIZES = {"train": 120, "test": 30}  # images per class


def split_arrays(split, image_size, seed, limit):
    """The `split` of the synthetic dataset (train and test come from disjoint seed streams)."""
    per_class = SPLIT_SIZES[split]
    count = NUM_CLASSES * per_class if limit is None else min(limit, NUM_CLASSES * per_class)
    pixels, labels = generate(count, image_size, seed=[seed, ("train", "test").index(split)])
    return Arrays(pixels, labels, list(CLASS_NAMES))


DATASET = Dataset("synthetic", "traffic-sign-like images drawn from the seed, no files (43 "
                  "classes; the default)", generate=split_arrays)
