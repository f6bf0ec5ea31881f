"""Ray casting of capsules and convex slabs into depth, part-index and normal images.

Vectorised NumPy. Conventions as in data_pipeline.geometry: camera at the origin looking along +z,
x right, y down, metres; pixel (u, v) = (column, row) with pixel centres at integer coordinates.
Every ray is scaled to z = 1 (r = K^-1 [u, v, 1]), so the ray parameter t of a hit is its depth z.
"""
import dataclasses

import numpy as np

# Pixels added around the projected bounding box of the solids before casting.
_BOX_MARGIN_PX = 2
# Solids this close to the camera plane make projected boxes meaningless: cast every pixel then.
_MIN_BOX_DEPTH = 0.05
_CUBE_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)


@dataclasses.dataclass(frozen=True)
class Solids:
    """The scene's foreground: capsules and one convex slab.

    Part index p < n_capsules is capsule p; p = n_capsules is the slab.

    Attributes:
      capsule_start: (n, 3) segment start points, metres.
      capsule_end: (n, 3) segment end points, metres.
      capsule_radius: (n,) radii, metres.
      slab_normals: (m, 3) outward unit normals of the slab's bounding planes.
      slab_offsets: (m,) plane offsets h: the slab is {x : normals @ x <= offsets}.
      slab_vertices: (k, 3) the slab's corners (for its projected bounding box).
    """

    capsule_start: np.ndarray
    capsule_end: np.ndarray
    capsule_radius: np.ndarray
    slab_normals: np.ndarray
    slab_offsets: np.ndarray
    slab_vertices: np.ndarray


def pixel_rays(K, u, v):
    """(..., 3) rays through pixels (u, v) (each (...)), scaled to z = 1."""
    Kinv = np.linalg.inv(K)
    uv1 = np.stack(np.broadcast_arrays(u, v, 1.0), axis=-1).astype(np.float64)
    return uv1 @ Kinv.T


def _ray_grid(K, u0, u1, v0, v1):
    """Separable ray components of a pixel box for a skew-free K: x (1, w) and y (h, 1), z = 1."""
    x = (np.arange(u0, u1, dtype=np.float64) - K[0, 2]) / K[0, 0]
    y = (np.arange(v0, v1, dtype=np.float64) - K[1, 2]) / K[1, 1]
    return x[None, :], y[:, None]


def _dot(x, y, v):
    """ray . v for the rays (x, y, 1) of a box; broadcasts to (h, w)."""
    return x * v[0] + y * v[1] + v[2]


def _capsule_hit(x, y, start, end, radius):
    """First hit of the rays (x, y, 1) with one capsule (segment start-end, radius).

    Returns:
      (h, w) ray parameter (= depth) of the hit, inf where the ray misses.
    """
    axis = end - start
    baba = axis @ axis
    baoa = -(axis @ start)  # axis . (origin - start)
    oaoa = start @ start
    rr = x * x + y * y + 1.0
    bard = _dot(x, y, axis)
    rdoa = -_dot(x, y, start)
    r2 = radius ** 2
    # Infinite cylinder: |w|^2 baba - (w . axis)^2 = r^2 baba with w = t ray - start.
    a = baba * rr - bard ** 2
    b = baba * rdoa - baoa * bard
    c = baba * oaoa - baoa ** 2 - r2 * baba
    h = b ** 2 - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_cyl = (-b - np.sqrt(np.maximum(h, 0.0))) / a
        y_axis = baoa + t_cyl * bard  # where along the axis the cylinder is hit, times |axis|
        on_side = (h >= 0.0) & (y_axis > 0.0) & (y_axis < baba)
        # Otherwise the hit (if any) is on the end cap on the side where the cylinder was met.
        cap_is_start = y_axis <= 0.0
        rdoc = np.where(cap_is_start, rdoa, -_dot(x, y, end))
        ococ = np.where(cap_is_start, oaoa, end @ end)
        hs = rdoc ** 2 - rr * (ococ - r2)
        t_cap = (-rdoc - np.sqrt(np.maximum(hs, 0.0))) / rr
    t = np.where(on_side, t_cyl, np.where((h >= 0.0) & (hs >= 0.0), t_cap, np.inf))
    return np.where(np.isfinite(t) & (t > 0.0), t, np.inf)


def _slab_hit(x, y, normals, offsets):
    """Entry of the rays (x, y, 1) into the convex slab (Cyrus-Beck clipping).

    Returns:
      t: (h, w) entry parameter, inf where the ray misses.
      face: (h, w) index of the entry plane.
    """
    nd = x[..., None] * normals[:, 0] + y[..., None] * normals[:, 1] + normals[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = offsets / nd
    t_enter_each = np.where(nd < 0.0, ratio, -np.inf)
    t_exit = np.where(nd > 0.0, ratio, np.inf).min(axis=-1)
    face = t_enter_each.argmax(axis=-1)
    t_enter = t_enter_each.max(axis=-1)
    parallel_outside = ((nd == 0.0) & (offsets < 0.0)).any(axis=-1)
    hit = (t_enter <= t_exit) & (t_enter > 0.0) & ~parallel_outside
    return np.where(hit, t_enter, np.inf), face


def _box(points, radii, K, height, width):
    """Pixel box (u0, u1, v0, v1), end-exclusive and clipped to the image, containing the
    projection of spheres (points (n, 3), radii (n,)); the whole image when any comes close to
    the camera plane."""
    if (points[:, 2] - radii).min() < _MIN_BOX_DEPTH:
        return 0, width, 0, height
    # Each sphere lies inside its axis-aligned cube, whose corners bound its projection.
    corners = (points[:, None, :] + radii[:, None, None] * _CUBE_CORNERS).reshape(-1, 3)
    uv = corners @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    lo = np.floor(uv.min(axis=0)).astype(int) - _BOX_MARGIN_PX
    hi = np.ceil(uv.max(axis=0)).astype(int) + _BOX_MARGIN_PX + 1
    u0, v0 = np.maximum(lo, 0)
    u1, v1 = np.minimum(hi, [width, height])
    return int(u0), int(max(u1, u0)), int(v0), int(max(v1, v0))


def cast(solids, K, height, width):
    """Renders the solids seen by camera K (z-buffer over parts, each cast in its own box).

    Args:
      solids: a Solids in this camera's frame.
      K: (3, 3) skew-free intrinsics, pixels.
      height, width: image size, pixels.

    Returns:
      depth: (H, W) float64, metres along the optical axis; inf where no solid is hit.
      part: (H, W) int32, part index of the visible solid (see Solids), -1 where none.
      normal: (H, W, 3) float64, outward unit surface normal, 0 where none.
    """
    if K[0, 1] != 0.0 or np.any(K[2] != [0.0, 0.0, 1.0]):
        raise ValueError(f"cast needs a skew-free pinhole K, got {K.tolist()}")
    depth = np.full((height, width), np.inf)
    part = np.full((height, width), -1, np.int32)
    face = np.zeros((height, width), np.int64)
    n_caps = len(solids.capsule_radius)
    for k in range(n_caps + 1):
        if k < n_caps:
            ends = np.stack([solids.capsule_start[k], solids.capsule_end[k]])
            u0, u1, v0, v1 = _box(ends, np.full(2, solids.capsule_radius[k]), K, height, width)
        else:
            u0, u1, v0, v1 = _box(solids.slab_vertices, np.zeros(len(solids.slab_vertices)), K,
                                  height, width)
        if u1 <= u0 or v1 <= v0:
            continue
        x, y = _ray_grid(K, u0, u1, v0, v1)
        if k < n_caps:
            t = _capsule_hit(x, y, solids.capsule_start[k], solids.capsule_end[k],
                             solids.capsule_radius[k])
        else:
            t, slab_face = _slab_hit(x, y, solids.slab_normals, solids.slab_offsets)
        nearer = t < depth[v0:v1, u0:u1]
        depth[v0:v1, u0:u1][nearer] = t[nearer]
        part[v0:v1, u0:u1][nearer] = k
        if k == n_caps:
            face[v0:v1, u0:u1][nearer] = slab_face[nearer]
    # Normals: capsules from the closest point of the axis segment; the slab from its entry face.
    normal = np.zeros((height, width, 3))
    rows, cols = np.nonzero(part >= 0)
    k = part[rows, cols]
    points = pixel_rays(K, cols, rows) * depth[rows, cols][:, None]
    is_cap = k < n_caps
    kc = k[is_cap]
    start = solids.capsule_start[kc]
    axis = solids.capsule_end[kc] - start
    s = np.einsum("pk,pk->p", points[is_cap] - start, axis) / np.einsum("pk,pk->p", axis, axis)
    offset = points[is_cap] - (start + s.clip(0.0, 1.0)[:, None] * axis)
    normals = np.empty_like(points)
    normals[is_cap] = offset / np.linalg.norm(offset, axis=1, keepdims=True).clip(1e-12)
    normals[~is_cap] = solids.slab_normals[face[rows, cols][~is_cap]]
    normal[rows, cols] = normals
    return depth, part, normal


def plane_depth(K, height, width, normal, offset):
    """(H, W) depth of the plane {x : normal . x = offset} along every pixel's ray, metres
    (K skew-free).

    The plane must lie in front of the camera for every pixel (normal . ray and offset of the
    same sign).
    """
    x, y = _ray_grid(K, 0, width, 0, height)
    return offset / _dot(x, y, normal)


def depth_test_visibility(keypoints, K, depth, tolerance):
    """Visibility of keypoints by the depth test.

    A keypoint is visible when its pixel (the rounded projection) lies inside the image and the
    rendered surface there is not in front of the keypoint by more than `tolerance` (keypoints are
    joint centres inside the solids, so the surface that belongs to the joint itself lies in front
    by up to the solid's radius).

    Args:
      keypoints: (N, 3) camera frame, metres, z > 0.
      K: (3, 3) intrinsics.
      depth: (H, W) rendered depth, metres (inf or far where no hand).
      tolerance: (N,) metres.

    Returns:
      (N,) bool.
    """
    height, width = depth.shape
    uv = keypoints @ K.T
    uv = uv[:, :2] / uv[:, 2:3]
    col, row = np.round(uv).astype(int).T
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height) & (keypoints[:, 2] > 0)
    surface = depth[row.clip(0, height - 1), col.clip(0, width - 1)]
    return inside & (keypoints[:, 2] - surface <= tolerance)
