"""Energies over (x, y): argmin inference and the four structured losses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ebmppl.structured import (
    argmin_continuous,
    argmin_discrete,
    candidate_energies,
    energy_loss,
    hinge_loss,
    log_loss,
    perceptron_loss,
)


def test_continuous_argmin_solves_a_quadratic():
    a = jnp.array([[1.0, 0.5], [-0.3, 2.0]])
    x = jax.random.normal(jax.random.key(0), (16, 2))
    y = argmin_continuous(lambda p, xi, yi: jnp.sum((yi - p @ xi) ** 2), a, x, jnp.zeros((16, 2)),
                          optimizer=optax.sgd(0.2), num_steps=200)
    np.testing.assert_allclose(y, x @ a.T, atol=1e-4)


def clusters(n=600):
    rng = np.random.default_rng(0)
    centres = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    labels = rng.integers(0, 3, n)
    return jnp.asarray(centres[labels] + 0.6 * rng.normal(size=(n, 2)), jnp.float32), jnp.asarray(labels)


def linear_energy(p, x, y):  # E(x, y) = -w_y · x - b_y for y a class index
    return -(p["w"][y] @ x + p["b"][y])


@pytest.mark.parametrize("loss", [perceptron_loss, hinge_loss, log_loss])
def test_contrastive_losses_train_a_classifier(loss):
    x, y = clusters()
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}
    classes = jnp.arange(3)
    opt = optax.adam(0.05)

    def step(carry, _):
        p, s = carry
        g = jax.grad(lambda q: loss(candidate_energies(linear_energy, q, x, classes), y))(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=300)
    pred, _ = argmin_discrete(linear_energy, params, x, classes)
    assert float(jnp.mean(pred == y)) > 0.9


def test_energy_loss_alone_collapses():
    """Pushing the correct answer down with nothing pulled up: the loss has no minimum (LeCun et al. 2006)."""
    x, y = clusters()
    params = {"w": jnp.zeros((3, 2)), "b": jnp.zeros(3)}
    losses = []
    for _ in range(60):
        loss, g = jax.value_and_grad(lambda q: energy_loss(candidate_energies(linear_energy, q, x, jnp.arange(3)), y))(params)
        params = jax.tree.map(lambda p, gi: p - 0.5 * gi, params, g)
        losses.append(float(loss))
    # it keeps falling at a steady rate: the energies run off to -inf
    assert losses[-1] < -20 and losses[-1] < losses[30] - 10


def test_hinge_uses_the_most_offending_incorrect_answer():
    e = jnp.array([[0.0, 0.2, 5.0]])
    assert float(hinge_loss(e, jnp.array([0]), margin=1.0)) == pytest.approx(0.8)
    assert float(hinge_loss(e, jnp.array([0]), margin=0.1)) == 0.0
    with pytest.raises(ValueError, match="margin"):
        hinge_loss(e, jnp.array([0]), margin=-1.0)
