"""Binary data sets for discrete energies: bars-and-stripes, and the 8x8 digits binarised."""

from __future__ import annotations

import itertools

import numpy as np

__all__ = ["bars_and_stripes", "binarize", "binarized_digits"]


def bars_and_stripes(size: int = 4, *, flatten: bool = True, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """Every bars-and-stripes pattern of a ``size × size`` grid, once each (MacKay 2003).

    A pattern switches on a subset of the rows (stripes) or a subset of the columns (bars); the
    all-off and all-on grids are both, so there are ``2 · 2**size − 2`` distinct patterns (30 for 4 × 4),
    which the data distribution weighs equally: its entropy, the best mean log-likelihood a model can
    reach, is ``−log(2 · 2**size − 2)`` (``−log 30 = −3.401`` nats).

    Parameters
    ----------
    size
        Side of the grid (``1 ≤ size ≤ 12``).
    flatten
        ``(n, size²)`` (default) or ``(n, size, size)``.
    low, high
        The values of an off and an on pixel (``-1, 1`` for spins).

    Examples
    --------
    >>> x = bars_and_stripes(4)
    >>> x.shape, x.dtype, len({row.tobytes() for row in x})
    ((30, 16), dtype('float32'), 30)
    >>> bars_and_stripes(2, flatten=False, low=-1.0)[1].tolist()
    [[-1.0, -1.0], [1.0, 1.0]]
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= 12:
        raise ValueError(f"size must be an int in [1, 12], got {size!r}.")
    patterns = []
    for bits in itertools.product((0, 1), repeat=size):
        lines = np.asarray(bits, bool)
        patterns.append(np.repeat(lines[:, None], size, axis=1))  # stripes: whole rows on
    for bits in itertools.product((0, 1), repeat=size):
        if 0 < sum(bits) < size:  # all-off and all-on are already there
            lines = np.asarray(bits, bool)
            patterns.append(np.repeat(lines[None, :], size, axis=0))  # bars: whole columns on
    on = np.stack(patterns)
    x = np.where(on, high, low).astype(np.float32)
    return x.reshape(len(patterns), -1) if flatten else x


def binarize(x: np.ndarray, threshold: float = 0.5, *, low: float = 0.0, high: float = 1.0) -> np.ndarray:
    """``high`` where ``x > threshold``, else ``low`` (float32): real data onto a binary support.

    Examples
    --------
    >>> binarize(np.array([0.1, 0.7, 0.5])).tolist(), binarize(np.array([0.1, 0.7]), low=-1.0).tolist()
    ([0.0, 1.0, 0.0], [-1.0, 1.0])
    """
    return np.where(np.asarray(x) > threshold, high, low).astype(np.float32)


def binarized_digits(split: str = "all", *, threshold: float = 0.5, flatten: bool = True, low: float = 0.0,
                     high: float = 1.0, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 scikit-learn 8x8 digits, each pixel on where its intensity exceeds ``threshold`` (of 1).

    Parameters
    ----------
    split, test_fraction, seed
        As in :func:`ebmppl.data.load_digits` (the same fixed split).
    threshold
        Intensity in ``[0, 1]`` (the digits' 0..16 scaled by 1/16) above which a pixel is on.
    flatten
        Images as ``(n, 64)`` (default) or ``(n, 8, 8)``.
    low, high
        The values of an off and an on pixel (``-1, 1`` for spins).

    Returns
    -------
    tuple
        ``(x, labels)``: float32 images and int32 labels.

    Examples
    --------
    >>> x, y = binarized_digits("train")
    >>> x.shape, sorted(np.unique(x).tolist()), round(float(x.mean()), 2)
    ((1438, 64), [0.0, 1.0], 0.29)
    """
    from ebmppl.data.digits import load_digits

    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1) (an intensity), got {threshold!r}.")
    images, labels = load_digits(split, test_fraction=test_fraction, seed=seed)
    intensity = (images[:, 0] + 1.0) / 2.0  # [-1, 1] -> [0, 1]
    x = binarize(intensity, threshold, low=low, high=high)
    return (x.reshape(len(x), -1) if flatten else x), labels
