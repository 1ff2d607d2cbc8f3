"""Session hygiene for the tests and the doctests (this file sits above both test paths).

Every XLA:CPU executable maps a few to a few dozen memory regions, and a test worker compiles
thousands of programs. Linux refuses new maps beyond ``vm.max_map_count`` (65530 by default) and
XLA's compiler then dies with a segmentation fault (seen in CI, about half-way through the suite).
When a worker holds more than half that many maps, drop JAX's compiled programs between tests: the
next test recompiles what it needs, which costs far less than a lost worker.
"""

import gc

import jax


def _map_limit() -> int:
    try:
        with open("/proc/sys/vm/max_map_count") as f:
            return int(f.read()) // 2
    except (OSError, ValueError):
        return 30000


_MAP_LIMIT = _map_limit()


def _num_maps() -> int:
    try:
        with open("/proc/self/maps", "rb") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: no such limit to respect
        return 0


def pytest_runtest_teardown(item, nextitem):
    if _num_maps() > _MAP_LIMIT:
        jax.clear_caches()
        gc.collect()
