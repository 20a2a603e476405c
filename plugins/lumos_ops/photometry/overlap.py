"""Exact area of overlap between square pixels and an ellipse, vectorised over many ellipses.

The ellipse is mapped onto the unit circle by the affine map ``u = S^-1 R(-pa) (p - c)``; each unit
pixel square becomes a parallelogram, whose intersection area with the unit circle is computed
exactly (sum over the polygon edges of the signed area of the triangle ``(0, A, B)`` clipped by the
circle: straight pieces inside, circular sectors outside). The area in pixels is that area times the
Jacobian ``a * b``. Only pixels crossed by the ellipse boundary go through the exact formula; pixels
entirely inside get 1 and pixels entirely outside 0.
"""

from __future__ import annotations

import numpy as np

from lumos_ops.exceptions import LumosValueError

__all__ = ["ellipse_pixel_overlap"]

_CORNERS = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
"""Pixel corners relative to the pixel centre, counter-clockwise (x, y)."""


def _segment_circle_area(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Signed area of the triangle (0, A, B) intersected with the unit disc (positive if CCW).

    The segment ``A + t (B - A)`` meets the circle at ``t1 <= t2`` (clipped to [0, 1]; both 0 when the
    line misses it or A = B): straight piece ``(P1, P2)`` inside, circular sectors ``(A, P1)`` and
    ``(P2, B)`` outside. Arrays of any (equal) shape.
    """
    # A few buffers reused throughout (fresh arrays of this size cost page faults, not arithmetic);
    # every value takes the operations of the textbook formula in its order
    # (tests/photometry/test_aperture_reference.py compares them bit for bit).
    dx = bx - ax
    dy = by - ay
    tmp = dy * dy
    qa = dx * dx
    qa += tmp  # dx^2 + dy^2
    qb = ax * dx
    qb += np.multiply(ay, dy, out=tmp)  # A . d
    qc = ax * ax
    qc += np.multiply(ay, ay, out=tmp)
    qc -= 1.0  # |A|^2 - 1
    disc = qb * qb
    disc -= np.multiply(qa, qc, out=tmp)
    miss = np.flatnonzero(~((disc > 0.0) & (qa > 0.0)))
    root = np.sqrt(np.maximum(disc, 0.0, out=disc), out=disc)
    np.negative(qb, out=qb)
    with np.errstate(divide="ignore", invalid="ignore"):  # misses (qa may be 0) are set to 0 below
        t1 = np.subtract(qb, root, out=qc)
        t1 /= qa
        t2 = np.add(qb, root, out=qb)
        t2 /= qa
    np.clip(t1, 0.0, 1.0, out=t1)
    np.clip(t2, 0.0, 1.0, out=t2)
    t1.reshape(-1)[miss] = 0.0
    t2.reshape(-1)[miss] = 0.0
    p1x = np.multiply(t1, dx, out=qa)
    p1x += ax
    p1y = np.multiply(t1, dy, out=t1)
    p1y += ay
    p2x = np.multiply(t2, dx, out=disc)
    p2x += ax
    p2y = np.multiply(t2, dy, out=t2)
    p2y += ay
    # sector (A, P1): atan2(A x P1, A . P1); sector (P2, B); triangle (P1, P2)
    cross = np.multiply(ax, p1y, out=dx)
    cross -= np.multiply(ay, p1x, out=tmp)
    dot = np.multiply(ax, p1x, out=dy)
    dot += np.multiply(ay, p1y, out=tmp)
    area = np.arctan2(cross, dot)
    cross = np.multiply(p2x, by, out=dx)
    cross -= np.multiply(p2y, bx, out=tmp)
    dot = np.multiply(p2x, bx, out=dy)
    dot += np.multiply(p2y, by, out=tmp)
    sector_b = np.arctan2(cross, dot, out=dx)
    triangle = np.multiply(p1x, p2y, out=dy)
    triangle -= np.multiply(p1y, p2x, out=tmp)
    area += triangle
    area += sector_b
    area *= 0.5
    return area


def ellipse_pixel_overlap(
    shape: tuple[int, int],
    x: np.ndarray | float,
    y: np.ndarray | float,
    a: np.ndarray | float,
    b: np.ndarray | float,
    pa: np.ndarray | float,
) -> np.ndarray:
    """Fraction of every pixel of a grid covered by each of ``n`` ellipses (exact geometry).

    Parameters
    ----------
    shape : (ny, nx)
        Grid shape in pixels; pixel ``[j, i]`` is the unit square centred on (x=i, y=j).
    x, y : array_like, shape (n,) or scalar
        Ellipse centres (0-based pixels, x = column).
    a, b : array_like, shape (n,) or scalar
        Semi-major and semi-minor axes (pixels, > 0); ``a`` lies along ``pa``.
    pa : array_like, shape (n,) or scalar
        Position angle of ``a`` (degrees, counter-clockwise from +x).

    Returns
    -------
    ndarray, shape (n, ny, nx), float64
        Covered fraction of each pixel in [0, 1]; the sum is the aperture area in pixels when the
        ellipse lies inside the grid.
    """
    x, y, a, b, pa = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (x, y, a, b, pa))
    x, y, a, b, pa = np.broadcast_arrays(x, y, a, b, pa)
    if x.ndim != 1:
        raise LumosValueError(f"x, y, a, b, pa must broadcast to 1-D arrays, got shape {x.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0)):
        raise LumosValueError("semi-axes a and b must be finite and > 0 pixels")
    ny, nx = (int(s) for s in shape)
    n = x.size
    theta = np.deg2rad(pa)
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    out = np.zeros((n, ny, nx), dtype=np.float64)
    if n == 0:
        return out
    # Union of the bounding boxes (plus one pixel): only this window can be covered.
    half_x = np.sqrt((a * cos_t) ** 2 + (b * sin_t) ** 2)
    half_y = np.sqrt((a * sin_t) ** 2 + (b * cos_t) ** 2)
    i0 = max(int(np.floor(np.min(x - half_x))) - 1, 0)
    i1 = min(int(np.ceil(np.max(x + half_x))) + 2, nx)
    j0 = max(int(np.floor(np.min(y - half_y))) - 1, 0)
    j1 = min(int(np.ceil(np.max(y + half_y))) + 2, ny)
    if i1 <= i0 or j1 <= j0:
        return out
    window = out[:, j0:j1, i0:i1]
    # Pixel centres relative to the ellipse centre, in the normalised (unit-circle) frame.
    gx = np.arange(i0, i1, dtype=np.float64)[None, None, :] - x[:, None, None]
    gy = np.arange(j0, j1, dtype=np.float64)[None, :, None] - y[:, None, None]
    c, s = cos_t[:, None, None], sin_t[:, None, None]
    ia, ib = 1.0 / a[:, None, None], 1.0 / b[:, None, None]
    u = (c * gx + s * gy) * ia
    v = (-s * gx + c * gy) * ib
    # Images of the pixel corner offsets (the parallelogram around u, v).
    corner_u = (cos_t[:, None] * _CORNERS[None, :, 0] + sin_t[:, None] * _CORNERS[None, :, 1]) / a[:, None]
    corner_v = (-sin_t[:, None] * _CORNERS[None, :, 0] + cos_t[:, None] * _CORNERS[None, :, 1]) / b[:, None]
    reach = np.sqrt(corner_u**2 + corner_v**2).max(axis=1)[:, None, None]
    radius = np.sqrt(u * u + v * v)
    covered = (radius + reach <= 1.0).astype(np.float64)
    boundary = np.flatnonzero((radius + reach > 1.0) & (radius - reach < 1.0))
    if boundary.size:
        k = boundary // (u.shape[1] * u.shape[2])
        # corners 0 1 2 3 0 of each pixel, (5, m): corners j and j + 1 are an edge
        wrap = [0, 1, 2, 3, 0]
        pu = np.take(u, boundary) + np.take(corner_u.T[wrap], k, axis=1)
        pv = np.take(v, boundary) + np.take(corner_v.T[wrap], k, axis=1)
        edges = _segment_circle_area(pu[:4], pv[:4], pu[1:], pv[1:])
        area = edges[0] + edges[1]
        area += edges[2]
        area += edges[3]
        covered.reshape(-1)[boundary] = np.clip(np.abs(area) * a[k] * b[k], 0.0, 1.0)
    window[...] = covered
    return out
