"""Numerics: log space where exp(-E) appears, energies of magnitude 1e4, float64."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ebmppl
from ebmppl.compose import mixture
from ebmppl.evaluation import held_out_log_likelihood, log_likelihood, log_ratio


def offset_gaussian(offset: float, scale: float = 1.0) -> ebmppl.Energy:
    """E(x) = offset + scale·|x|²/2 in 2-D: log Z = log(2π/scale) - offset."""
    return ebmppl.Energy(lambda p, x: p["c"] + p["s"] * 0.5 * jnp.sum(x**2),
                         {"c": jnp.float32(offset), "s": jnp.float32(scale)}, event_shape=(2,))


@pytest.mark.parametrize("offset", [1e4, -1e4])
def test_log_z_is_finite_and_right_for_energies_of_magnitude_1e4(offset):
    e = offset_gaussian(offset)
    truth = math.log(2 * math.pi) - offset
    ais = ebmppl.log_partition(e, jax.random.key(0), num_chains=256, num_temperatures=200)
    imp = ebmppl.log_partition(e, jax.random.key(1), method="importance", num_chains=4096)
    grid = ebmppl.log_partition(e, method="grid", limits=(-8, 8, -8, 8))
    for est in (ais, imp, grid):
        assert math.isfinite(est.log_z) and math.isfinite(est.stderr)
        # float32 resolves 1e4 to ~1e-3: the estimate is right up to that and its Monte-Carlo error
        assert abs(est.log_z - truth) < 4 * est.stderr + 2e-3 * max(1.0, abs(offset) / 1e3), est


def test_sharp_energy_of_magnitude_1e4_stays_finite():
    e = offset_gaussian(0.0, scale=1e4)  # standard deviation 0.01; |E| ~ 1e4 over the base's range
    truth = math.log(2 * math.pi / 1e4)
    est = ebmppl.log_partition(e, jax.random.key(0), num_chains=256, num_temperatures=1000, base_scale=1.0)
    assert math.isfinite(est.log_z) and math.isfinite(est.stderr)
    assert abs(est.log_z - truth) < 4 * est.stderr + 0.05


def test_likelihoods_ratios_and_mixtures_stay_finite_at_1e4():
    far = offset_gaussian(1e4)
    near = offset_gaussian(-1e4)
    x = jnp.zeros((3, 2))
    log_z = math.log(2 * math.pi) - 1e4
    assert bool(jnp.all(jnp.isfinite(log_likelihood(far, x, log_z))))
    ll, se = held_out_log_likelihood(far, x, log_z)
    assert math.isfinite(ll) and abs(ll - (-math.log(2 * math.pi))) < 1e-2
    assert float(log_ratio(far, x[:1], x[:1] + 1.0)[0]) == pytest.approx(0.5 * 2, abs=1e-2)
    # exp(-E) would overflow (1e4) or underflow to 0 (-1e4); log-sum-exp does neither
    both = mixture([far, near])
    assert bool(jnp.all(jnp.isfinite(both.energy(x))))
    assert float(both.energy(x)[0]) == pytest.approx(-1e4, rel=1e-6)


def test_energy_clip_bounds_runaway_energies():
    from ebmppl.objectives import cd_loss

    e = ebmppl.Energy(lambda p, x: p * jnp.sum(x), jnp.float32(1.0), event_shape=(1,))
    x_pos, x_neg = jnp.zeros((4, 1)), jnp.full((4, 1), -1e6)  # negatives far below: E = -1e6
    grad = jax.grad(lambda p: cd_loss(e, p, x_pos, x_neg, alpha=0.0, energy_clip=10.0)[0])(e.params)
    assert float(grad) == 0.0  # the clipped negatives stop pushing
    loss, _ = cd_loss(e, e.params, x_pos, x_neg, alpha=0.1, energy_clip=10.0)
    assert math.isfinite(float(loss)) and float(loss) <= 10.0 + 0.1 * 100
    with pytest.raises(ValueError, match="energy_clip"):
        ebmppl.objectives.contrastive_divergence(e, __import__("optax").sgd(0.1), energy_clip=-1.0)


@pytest.mark.slow
def test_float64_works_when_enabled():
    script = pathlib.Path(__file__).parent / "scripts" / "float64.py"
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "JAX_ENABLE_X64": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert out["sample_dtype"] == "float64"
    assert out["sample_mean_err"] < 0.15
    assert out["fit_param_dtypes"] == ["float64"] and out["fit_finite"] and out["checkpoint_exact"]
    assert out["ais_err"] < 4 * out["ais_stderr"] + 0.02
    assert out["grid_err"] < 1e-5  # the quadrature error of a 600² grid, not rounding


def test_same_seed_same_results_run_after_run():
    e = offset_gaussian(0.0)
    kw = dict(sampler="nuts", num_chains=2, num_warmup=100, num_samples=100, progress_bar=False)
    a = ebmppl.sample(e, jax.random.key(7), **kw).positions
    b = ebmppl.sample(e, jax.random.key(7), **kw).positions
    assert bool(jnp.array_equal(a, b))
    data = np.random.default_rng(0).normal(size=(64, 2)).astype("float32")
    fits = [ebmppl.fit(e, data, key=jax.random.key(3), num_steps=30, chunk_size=10, progress_bar=False,
                       sampler_params={"step_size": 0.05, "noise_scale": 0.3}) for _ in range(2)]
    for u, v in zip(jax.tree.leaves(fits[0].state), jax.tree.leaves(fits[1].state), strict=True):
        assert bool(jnp.array_equal(jax.random.key_data(u) if jnp.issubdtype(u.dtype, jax.dtypes.prng_key) else u,
                                    jax.random.key_data(v) if jnp.issubdtype(v.dtype, jax.dtypes.prng_key) else v))
