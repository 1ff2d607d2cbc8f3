"""AIS ``log_partition`` on energies far from unit scale: right, or flagged unreliable; never confidently wrong.

Regression for a float32 cancellation in AIS's cached re-tempering (the energy's share of the cached
log-density rounded away at small β, chains froze and the weights collapsed to the base's or to a rounding
artefact independent of the energy) and for a default step size that ignored the energy's scale.
"""

import math
import warnings

import jax
import jax.numpy as jnp
import pytest

import ebmppl
from ebmppl.logz import LogZWarning

NUM_TEMPERATURES = 200
NUM_CHAINS = 128


def _narrow(params, x):  # an isotropic Gaussian of sd params["sd"], energy offset by params["offset"]
    return 0.5 * jnp.sum((x / params["sd"]) ** 2) + params["offset"]


def _energy(sd, offset=0.0):
    """The energy and its exact log Z. One energy_fn for every scale: the tests share one compiled AIS; the typical
    region is the default (0, 1), so the default AIS must find the scale by itself."""
    params = {"sd": jnp.asarray(sd, jnp.float32), "offset": jnp.asarray(offset, jnp.float32)}
    return ebmppl.Energy(_narrow, params, event_shape=(2,)), math.log(2 * math.pi * sd**2) - offset


def _estimate(energy, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LogZWarning)
        return ebmppl.log_partition(energy, jax.random.key(1), num_temperatures=NUM_TEMPERATURES,
                                    num_chains=NUM_CHAINS, **kwargs)


def _close(est, exact):
    return abs(est.log_z - exact) < 4 * est.stderr + 0.05


@pytest.mark.parametrize("sd", [0.004, 0.001, 30.0])
def test_right_or_flagged_at_any_scale(sd):
    energy, exact = _energy(sd)
    est = _estimate(energy)
    assert (not est.reliable) or _close(est, exact), (sd, exact, est)
    if sd < 1:  # at small scale the default now follows the energy: a reliable, right answer (not merely a flag)
        assert est.reliable and _close(est, exact), (sd, exact, est)


def test_two_energies_two_answers():
    # the same narrow density, once with an offset of -2500 in the energy (as a network scaled by 1/σ has): the
    # two log Z differ by exactly 2500; they once came out bit-identical, from a rounding artefact
    sd = 0.004
    (plain, exact), (shifted, exact_shifted) = _energy(sd), _energy(sd, -2500.0)
    x = sd * jax.random.normal(jax.random.key(0), (2000, 2))
    a, b = _estimate(plain, data=x), _estimate(shifted, data=x)
    assert a.log_z != b.log_z
    for est, z in ((a, exact), (b, exact_shifted)):
        assert (not est.reliable) or _close(est, z), (z, est)
    assert abs(b.log_z - a.log_z - 2500.0) < 4 * math.hypot(a.stderr, b.stderr) + 0.05


def test_stuck_chains_are_flagged():
    # a step 250x the energy's spread over two temperatures: the chains cannot move, and the verdict says so
    sd = 0.004
    energy, _ = _energy(sd)
    x = sd * jax.random.normal(jax.random.key(0), (2000, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = ebmppl.log_partition(energy, jax.random.key(1), num_temperatures=2, num_chains=NUM_CHAINS, data=x,
                                   sampler_params={"step_size": 1.0})
    assert not est.reliable and "barely move" in est.reason
    assert any(issubclass(w.category, LogZWarning) for w in caught)
