"""Appearance: skin tones, shading of the rendered hand, cluttered backgrounds.

Colours are RGB floats in [0, 1] until `compose`. The backgrounds mix gradients, random shapes
and blotchy low-frequency noise, and some of their shapes are skin-coloured, so the hand cannot
be found by colour alone. (No per-pixel sensor noise: it would make the PNGs incompressible.)
"""
import cv2
import numpy as np

# Skin tones from light to dark (RGB, 0-1); a sample interpolates between neighbours.
SKIN_TONES = np.array([
    [0.98, 0.85, 0.75],
    [0.93, 0.76, 0.64],
    [0.86, 0.66, 0.52],
    [0.75, 0.53, 0.39],
    [0.58, 0.39, 0.27],
    [0.40, 0.26, 0.17],
])


def skin_tone(rng):
    """(3,) a random skin colour, RGB in [0, 1]."""
    k = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(np.floor(k))
    j = min(i + 1, len(SKIN_TONES) - 1)
    tone = SKIN_TONES[i] + (k - i) * (SKIN_TONES[j] - SKIN_TONES[i])
    return np.clip(tone * rng.uniform(0.92, 1.08, 3), 0.0, 1.0)


def _smooth_noise(rng, height, width, cells):
    """(H, W) smooth noise in about [0, 1]: a random grid of `cells` cells, bicubic upsampling."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


def _random_colour(rng, skin_probability=0.2):
    return skin_tone(rng) if rng.random() < skin_probability else rng.random(3)


def background(rng, height, width):
    """A cluttered textured background, drawn at half resolution (it is blurred anyway).

    Returns:
      (H, W, 3) float32 RGB in [0, 1].
    """
    full_size = (width, height)
    height, width = (height + 1) // 2, (width + 1) // 2
    # A two-colour gradient in a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * np.arange(width, dtype=np.float32)[None, :]
            + np.sin(angle) * np.arange(height, dtype=np.float32)[:, None])
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = _random_colour(rng), _random_colour(rng)
    image = c0.astype(np.float32) + ramp[..., None] * (c1 - c0).astype(np.float32)
    # Random shapes (filled or outlined), each in a random colour, some skin-coloured.
    scale = max(height, width)
    for _ in range(rng.integers(12, 35)):
        colour = tuple(float(c) for c in _random_colour(rng))
        kind = rng.integers(5)
        thickness = -1 if rng.random() < 0.7 else int(rng.integers(1, 4))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.uniform(0.02, 0.3) * scale)
        if kind == 0:
            cv2.rectangle(image, (cx - size, cy - size // 2), (cx + size, cy + size // 2),
                          colour, thickness)
        elif kind == 1:
            cv2.circle(image, (cx, cy), max(size // 2, 1), colour, thickness)
        elif kind == 2:
            cv2.ellipse(image, (cx, cy), (max(size, 1), max(size // 3, 1)),
                        float(rng.uniform(0, 180)), 0.0, 360.0, colour, thickness)
        elif kind == 3:
            corners = rng.integers(-size, size + 1, (int(rng.integers(3, 7)), 2))
            cv2.fillPoly(image, [(corners + [cx, cy]).astype(np.int32)], colour)
        else:
            end = (cx + int(rng.integers(-scale, scale)), cy + int(rng.integers(-scale, scale)))
            cv2.line(image, (cx, cy), end, colour, int(rng.integers(1, 5)))
    # Blotchy illumination and stains, then a blur of random strength.
    blotches = _smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    image *= (0.7 + 0.6 * blotches)[..., None]
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.2, 1.0))
    image = cv2.resize(image, full_size, interpolation=cv2.INTER_LINEAR)
    return np.clip(image, 0.0, 1.0)


def shade(part, normal, albedo, rng):
    """Lambertian shading with ambient light and a faint highlight.

    Args:
      part: (H, W) int part index, -1 where nothing was hit.
      normal: (H, W, 3) outward unit normals (camera frame, the camera looks along +z).
      albedo: (num_parts, 3) RGB colour of each part.
      rng: numpy Generator (light direction and strength).

    Returns:
      (n, 3) float32 RGB of the n pixels where part >= 0, in row-major order.
    """
    # A light from the camera's side (negative z), off-axis by a random amount.
    light = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), -rng.uniform(0.5, 1.5)])
    light /= np.linalg.norm(light)
    ambient = rng.uniform(0.25, 0.5)
    hit = part >= 0
    n = normal[hit]
    diffuse = np.clip(n @ light, 0.0, None)
    half = light + np.array([0.0, 0.0, -1.0])  # halfway between the light and the view direction
    specular = 0.12 * np.clip(n @ (half / np.linalg.norm(half)), 0.0, None) ** 20
    shaded = (albedo[part[hit]] * (ambient + (1.0 - ambient) * diffuse)[:, None]
              + specular[:, None])
    return shaded.astype(np.float32)


def part_albedo(rng, is_forearm):
    """(num_parts, 3) colours: one skin tone with slight per-part variation; the forearm is bare
    skin or a sleeve."""
    tone = skin_tone(rng)
    albedo = tone * rng.uniform(0.95, 1.05, (len(is_forearm), 3))
    if rng.random() < 0.5:
        albedo[is_forearm] = rng.random(3)
    return np.clip(albedo, 0.0, 1.0)


def compose(part, shaded, backdrop):
    """The colour image: the shaded hand over the background, edges softened by a slight blur.

    Args:
      part: (H, W) part index, -1 where the background shows.
      shaded: (n, 3) colours of the n hand pixels (see `shade`).
      backdrop: (H, W, 3) float32 background; overwritten.

    Returns:
      (H, W, 3) uint8 RGB (rounded, saturated).
    """
    backdrop[part >= 0] = shaded
    image = cv2.GaussianBlur(backdrop, (0, 0), 0.6)
    return cv2.convertScaleAbs(image, alpha=255.0)  # all values are >= 0
