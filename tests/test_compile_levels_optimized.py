"""The suite's compile levels are applied (tests/conftest.py): a file marked xla_optimized compiles optimised."""

import os

import jax
import pytest

pytestmark = pytest.mark.xla_optimized


@pytest.mark.skipif("jax_disable_most_optimizations" not in jax.config.values,
                    reason="this jax has no jax_disable_most_optimizations: one level for all")
def test_a_marked_file_compiles_with_optimizations():
    assert jax.config.values["jax_disable_most_optimizations"] is False
    assert os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] == "0"
