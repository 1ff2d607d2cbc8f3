"""Short-run latent generator and OOD scoring."""

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.latent import auroc, interpolate, ood_scores, reconstruct, short_run_generator
from ebmppl.targets import gaussian, gaussian_mixture


def test_short_run_generator_moves_noise_to_the_modes_and_interpolates():
    modes = gaussian_mixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], [0.05 * np.eye(2)] * 2)
    g = short_run_generator(modes.energy, num_mcmc_steps=100, step_size=0.01, clamp=None)
    z1, z2 = jnp.array([0.8, 0.3]), jnp.array([-0.9, -0.2])
    path = g(interpolate(z1, z2, num=9))
    # the ends land on their modes; the path switches mode once, in between
    assert path[0, 0] < -0.9 and path[-1, 0] > 0.9
    assert np.sum(np.diff(np.sign(np.asarray(path[:, 0]))) != 0) == 1


def test_reconstruction_through_the_chain():
    g = short_run_generator(gaussian([0.0, 0.0], np.eye(2)).energy, num_mcmc_steps=10, step_size=0.05, clamp=None)
    target = jnp.array([[0.3, -0.4], [1.0, 0.2]])
    _, x = reconstruct(g, target, jnp.zeros((2, 2)), num_steps=400)
    np.testing.assert_allclose(x, target, atol=1e-2)


def test_ood_scores_separate_far_points():
    t = gaussian([0.0, 0.0], np.eye(2))
    inside = t.sample(jax.random.key(0), 500)
    outside = 4.0 + t.sample(jax.random.key(1), 500)
    for method in ("energy", "grad_norm"):
        assert auroc(ood_scores(t.energy, inside, method), ood_scores(t.energy, outside, method)) > 0.99
    assert abs(auroc(np.arange(10.0), np.arange(10.0)) - 0.5) < 1e-12
