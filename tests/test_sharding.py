"""Sharded sampling and training on 2 forced CPU devices agree with one device.

Identical where the arithmetic is identical (fixed kernel parameters: every
chain does the same operations on either layout, and its key does not depend
on the device count); equal within floating-point reduction order where a
cross-device sum enters (pooled warm-up statistics, all-reduced gradients).
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import ebmppl
from ebmppl.sharding import resolve_mesh
from conftest import SUITE_XLA_FLAGS

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "two_devices.py"


@pytest.fixture(scope="module")
def two_device_results():
    env = {**os.environ, "EBMPPL_CPU_DEVICES": "2", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = SUITE_XLA_FLAGS  # no forced device count; the suite's compile flags
    run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_sharded_sampling_is_identical_with_fixed_kernel_parameters(two_device_results, sampler):
    # banana is element-wise arithmetic: each chain computes exactly the same thing on either layout
    assert two_device_results[f"banana-{sampler}-sharded"] == "P('shard',)"
    assert two_device_results[f"banana-{sampler}-fixed-identical"]


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_sharded_mlp_sampling_agrees_to_float_rounding(two_device_results, sampler):
    # an MLP energy multiplies (32 chains, d) instead of (64 chains, d) matrices per device, and the
    # CPU matmul rounds differently by block size: last-bit differences, which stay last-bit over 200 draws
    assert two_device_results[f"mlp-{sampler}-sharded"] == "P('shard',)"
    assert two_device_results[f"mlp-{sampler}-fixed-max-diff"] < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("target", ["banana", "mlp"])
def test_sharded_warmup_samples_the_same_law(two_device_results, target):
    # Pooled warm-up sums across devices in another order. On banana, Metropolis decisions amplify
    # that last bit until the chains decorrelate from their one-device twins; the adapted step size
    # is then another draw of the same random adaptation (a few per cent), and the draws follow the
    # same law: |Δ mean| within 4 Monte-Carlo standard errors (2 runs, ESS-based) in every coordinate.
    assert two_device_results[f"{target}-adapted-step-rel-diff"] < 0.1
    assert two_device_results[f"{target}-adapted-max-z"] < 4.0


@pytest.mark.slow
def test_sharded_training_matches_one_device(two_device_results):
    # 100 CD steps with all-reduced gradients: float32 reduction order only
    assert two_device_results["fit-max-param-diff"] < 1e-4 * max(1.0, two_device_results["fit-max-param-scale"])
    assert two_device_results["fit-loss-max-diff"] < 1e-4


@pytest.mark.slow
def test_sharded_training_metrics_match_one_device(two_device_results):
    # CD's loss, metrics, gradient and guard are reduced block by block in one all-reduce: same numbers
    rel = two_device_results["fit-metrics-max-rel-diff"]
    assert {"loss", "energy_pos", "energy_neg", "grad_norm", "buffer_std"} <= set(rel)
    assert max(rel.values()) < 1e-4, rel


@pytest.mark.slow
def test_sharded_training_of_a_term_that_is_not_a_row_mean(two_device_results):
    # DSM draws its noise from the step's key: not split by blocks, XLA partitions it as one computation
    assert two_device_results["dsm-max-param-diff"] < 1e-4


@pytest.mark.slow
def test_sharded_divergence_guard_stops_where_one_device_does(two_device_results):
    one, two = two_device_results["runaway-stops"]
    assert one != "finished" and one == two


@pytest.mark.slow
def test_a_term_that_sums_over_rows_cannot_claim_row_mean(two_device_results):
    message = two_device_results["summing-term"]
    assert "row_mean = True" in message and "SumOfSquares" in message and "row_mean = False" in message


def test_devices_argument_is_checked():
    e = ebmppl.Energy(lambda p, x: jnp.sum(x**2), jnp.zeros(()), event_shape=(2,))
    with pytest.raises(ValueError, match="devices="):
        resolve_mesh(len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="devices must be"):
        resolve_mesh("gpu")
    with pytest.raises(TypeError, match="jax.Device"):
        resolve_mesh(["cpu"])
    if len(jax.devices()) > 1:
        with pytest.raises(ValueError, match="num_chains"):
            ebmppl.sample(e, jax.random.key(0), num_chains=3, devices="all", progress_bar=False)


def test_one_device_mesh_gives_the_unsharded_draws():
    e = ebmppl.Energy(lambda p, x: 0.5 * jnp.sum((x - p) ** 2), jnp.ones(2), event_shape=(2,))
    kw = dict(sampler="mala", num_chains=4, num_warmup=50, num_samples=50, progress_bar=False)
    a = ebmppl.sample(e, jax.random.key(0), **kw).positions
    b = ebmppl.sample(e, jax.random.key(0), devices=1, **kw).positions
    assert bool(jnp.array_equal(a, b))
