"""A discrete energy's support travels through ebmppl.save / ebmppl.load."""

import jax.numpy as jnp
import pytest

import ebmppl
from ebmppl.checkpoint import CheckpointError
from ebmppl.support import BINARY, SPINS, Categorical


def _chain(p, x):
    return -p * jnp.sum(x[:-1] * x[1:])


@pytest.mark.parametrize("support", [SPINS, BINARY])
def test_support_round_trips_through_save_and_load(tmp_path, support):
    energy = ebmppl.Energy(_chain, jnp.asarray(0.7), event_shape=(4,), support=support)
    path = ebmppl.save(tmp_path / "chain.ebm", energy)
    template = ebmppl.Energy(_chain, jnp.asarray(0.0), event_shape=(4,), support=support)
    loaded = ebmppl.load(path, like=template)
    assert loaded.support == support and float(loaded.params) == pytest.approx(0.7)


def test_a_template_on_another_support_is_refused(tmp_path):
    path = ebmppl.save(tmp_path / "chain.ebm", ebmppl.Energy(_chain, jnp.asarray(0.7), event_shape=(4,), support=SPINS))
    with pytest.raises(CheckpointError, match="support"):
        ebmppl.load(path, like=ebmppl.Energy(_chain, jnp.asarray(0.0), event_shape=(4,)))


def test_categorical_support_is_recorded(tmp_path):
    potts = ebmppl.Energy(lambda p, x: -p * jnp.sum(x[:-1] * x[1:]), jnp.asarray(1.0), event_shape=(3, 4),
                          support=Categorical(4))
    meta = ebmppl.io.energy_metadata(potts)
    assert meta["support"] == {"type": "categorical", "num_categories": 4}
    assert ebmppl.io.energy_metadata(ebmppl.Energy(_chain, 1.0, event_shape=(3,)))["support"] is None


def test_composition_and_conditioning_keep_a_binary_support():
    import numpy as np

    from ebmppl import compose
    from ebmppl.discrete import ising

    e = ising(lattice=(3, 3), beta=0.3)
    assert compose.product(e, e).support == SPINS
    c = compose.condition(e, jnp.ones(9), np.arange(9) < 4)
    assert c.support == SPINS and float(c.energy(jnp.ones(5))) == pytest.approx(float(e.energy(jnp.ones(9))))
    with pytest.raises(ValueError, match="different supports"):
        compose.product(e, ising(lattice=(3, 3), spins=False))
    with pytest.raises(ValueError, match="outside the support"):
        compose.condition(e, jnp.zeros(9), np.arange(9) < 4)
