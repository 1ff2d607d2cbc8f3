"""Data sets: 2-D toy densities with exact samplers and log-densities, the 8x8 digits, and binary data sets
(bars-and-stripes, binarised digits) for discrete energies."""

from ebmppl.data.binary import bars_and_stripes, binarize, binarized_digits
from ebmppl.data.digits import load_digits
from ebmppl.data.toy import (
    TOY_DENSITIES,
    ToyDensity,
    checkerboard,
    eight_gaussians,
    pinwheel,
    rings,
    toy,
    two_moons,
    two_spirals,
)

__all__ = ["ToyDensity", "TOY_DENSITIES", "toy", "two_moons", "eight_gaussians", "rings", "checkerboard",
           "two_spirals", "pinwheel", "load_digits", "bars_and_stripes", "binarize", "binarized_digits"]
