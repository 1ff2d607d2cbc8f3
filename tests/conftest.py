"""Shared targets and helpers: Monte-Carlo tolerances come from ESS, not from tuning."""

import os
import shutil
import subprocess
import sys
import tempfile

# One CPU device per test process, set before anything imports jax or ebmppl: `import ebmppl` would
# otherwise split the CPU into one device per core (ebmppl.sharding.configure_cpu_devices). The suite
# already runs one pytest-xdist worker per core, and the sharding tests start their own processes
# with the device count they need. A value set by the caller wins.
os.environ.setdefault("EBMPPL_CPU_DEVICES", "1")

# The suite's time is mostly XLA compiling small programs (every eager op, every fresh closure), so it compiles
# for less: XLA:CPU's older loop emitters instead of its MLIR fusion emitters (an eager op 68 ms -> 34 ms; side by
# side on 2 cores tests/test_samplers.py + tests/test_fit.py 378 s -> 334 s), and LLVM at -O1 instead of -O2
# (the four longest gallery and CLI tests 190 s -> 147 s side by side: examples ~40 % faster, the 8000-step
# default fit no slower; -O0 halved the examples but made that fit 1.7x slower). The programs compute the same
# maths; the flags only change how XLA generates their code. Tests only: users keep XLA's defaults. A jaxlib
# that no longer knows a flag would abort on it, so a short probe decides once per run (the workers and every
# process a test starts inherit the answer); subprocess tests pass SUITE_XLA_FLAGS on.
FAST_COMPILE_FLAGS = "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1"
if "EBMPPL_TESTS_XLA_FLAGS" not in os.environ:
    try:  # a probe that fails in any way (unknown flag, timeout) leaves XLA's defaults: slower, never wrong
        _probe = subprocess.run([sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(2).block_until_ready()"],
                                env={**os.environ, "XLA_FLAGS": FAST_COMPILE_FLAGS, "JAX_PLATFORMS": "cpu"},
                                capture_output=True, timeout=300)
        _accepted = _probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        _accepted = False
    os.environ["EBMPPL_TESTS_XLA_FLAGS"] = FAST_COMPILE_FLAGS if _accepted else ""
SUITE_XLA_FLAGS = os.environ["EBMPPL_TESTS_XLA_FLAGS"]
if SUITE_XLA_FLAGS and SUITE_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {SUITE_XLA_FLAGS}".strip()

# JAX's persistent compilation cache, one folder for the whole run: the xdist workers and every process
# a test starts (CLI runs, the docs build and its gallery) inherit it. ebmppl builds fresh closures per
# call, so jax's in-memory cache misses where the program is the same; the disk cache is keyed by the
# program itself (HLO, compile options, devices, jax version) and returns the executable a fresh compile
# would build: the tests prove the same, with less compiling where programs repeat (side by side on 2
# cores: tests/test_kernels_as_values.py 2.1x faster; eager-heavy files gain nothing). The two tests that
# prove jax's *in-memory* reuse turn it off (fixture `without_persistent_cache`). A folder set by the
# caller is used and kept; JAX_ENABLE_COMPILATION_CACHE=false turns it off.
_OWN_JAX_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_JAX_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="ebmppl-tests-jax-cache-")
# only programs that took >= 0.1 s to compile are written: whole sample/fit programs, not the milliseconds of
# eager op-by-op compiles (writing those too made eager-heavy files ~6 % slower; at 0.2 s they ran as fast as
# without the cache, while repeated sample calls kept most of the gain)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
try:  # a size limit makes jax lock the folder (filelock) around reads and writes: processes that compile the
    import filelock  # noqa: F401  same program at once then never read a half-written entry
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 * 2**30))
except ImportError:  # without it a rare concurrent read fails, jax warns and compiles afresh
    pass

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ebmppl import diagnostics  # noqa: E402
from ebmppl.targets import gaussian, ill_conditioned_gaussian  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")
# in case a plugin imported jax before this file set the environment
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
if "JAX_COMPILATION_CACHE_MAX_SIZE" in os.environ:
    jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))

# helper programs run in their own process (other XLA flags, float64): not test modules
collect_ignore_glob = ["scripts/*"]

# Two compile levels, one per test file. Most of the suite's time is XLA compiling programs it runs for a few
# steps, so by default the programs compile with `jax_disable_most_optimizations` (LLVM -O0, no expensive
# passes); a file whose tests run long programs (8000-step fits, digits training) is marked
# `pytestmark = pytest.mark.xla_optimized` and keeps the -O1 above (the gallery chooses per example,
# tests/test_gallery.py). Measured file by file in one full run at each level (Dec 2026): e.g.
# tests/test_compare.py 64 s at -O1 vs 40 s at -O0, tests/test_cli_examples.py 244 s vs 447 s; the whole suite's
# work 3457 s at -O1 vs 2758 s with each file at its faster level (tests/test_compile_levels*.py check that the
# levels are applied). The level is set per module (module fixtures compile under it) and passed
# to the processes a test starts (JAX_DISABLE_MOST_OPTIMIZATIONS); jax's in-memory cache does not key on it, so
# a worker that changes level clears that cache: a test's programs are always compiled at its own file's level,
# whatever ran before it on the worker (the levels may round floats differently; a test's numbers must not
# depend on the scheduling).
def set_compile_level(optimized: bool) -> None:
    """Compile the next programs with XLA's optimisations (``optimized``) or without most of them.

    A jax without the `jax_disable_most_optimizations` option compiles everything as before (slower, never wrong).
    """
    disable = not optimized
    current = jax.config.values.get("jax_disable_most_optimizations")
    if current is None:
        return
    os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1" if disable else "0"
    if bool(current) != disable:
        jax.config.update("jax_disable_most_optimizations", disable)
        jax.clear_caches()


set_compile_level(False)  # collection (doctest imports) as before; each module then sets its own


@pytest.fixture(scope="module", autouse=True)
def _compile_level(request):
    set_compile_level(request.node.get_closest_marker("xla_optimized") is not None)


@pytest.fixture
def without_persistent_cache():
    """No disk cache during the test: for tests that prove jax's in-memory reuse of a compiled program
    (a disk-cache hit skips the backend compile and is fast too, so it would pass them as well)."""
    from jax.experimental.compilation_cache import compilation_cache

    enabled = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    compilation_cache.reset_cache()
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", enabled)
        compilation_cache.reset_cache()


@pytest.fixture(scope="session")
def gauss2d():
    return gaussian([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])


@pytest.fixture(scope="session")
def gauss10d():
    return ill_conditioned_gaussian(10, 100.0)


def z_scores(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """|mean of values - truth| / MCSE, per statistic; ``values`` is (chain, draw, k)."""
    est = values.mean(axis=(0, 1))
    se = diagnostics.mcse(values)
    return np.abs(est - truth) / se


def moment_z_scores(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-scores of the means and of every covariance entry (centred at the true mean)."""
    centred = draws - mean
    iu = np.triu_indices(mean.shape[0])
    products = centred[..., iu[0]] * centred[..., iu[1]]
    return z_scores(draws, mean), z_scores(products, cov[iu])


def langevin_stationary_cov(cov, step, noise_var):
    """Stationary covariance of x' = x - h P (x - m) + σ ξ for a Gaussian N(m, Σ), P = Σ⁻¹.

    V = A V A + σ² I with A = I - hP gives V = σ² (2hP - h²P²)⁻¹.
    """
    p = np.linalg.inv(cov)
    return noise_var * np.linalg.inv(2 * step * p - step**2 * p @ p)


# Tallies of the reliability tests (tests/test_reliability.py), reported at the end of the run:
# how many bad inputs were tried, how many faults injected, and how many were lost (a silent wrong
# result, a crash without a documented error, a damaged checkpoint loaded as good). Lost must stay 0.
RELIABILITY = {"bad inputs tried": 0, "faults injected": 0, "lost": 0}


def pytest_unconfigure(config):
    # the process that made the cache folder removes it (the controller, after its workers have ended)
    if _OWN_JAX_CACHE and not hasattr(config, "workerinput"):
        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


def pytest_sessionfinish(session):
    # under pytest-xdist each worker counts its own tests: hand the tally to the controller
    if hasattr(session.config, "workeroutput"):
        session.config.workeroutput["reliability"] = dict(RELIABILITY)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_CollectWorkerTallies())
        # the groups' order is ours (pytest_collection_modifyitems below), not "most tests first"
        if hasattr(config.option, "loadscopereorder"):  # pytest-xdist >= 3.6
            config.option.loadscopereorder = False


# Longest work first, one file per worker at a time. `--dist loadgroup` (pyproject.toml) hands a group of
# tests to one worker; every test's group is its file (the tests of a file share compiled programs and
# module fixtures), unless the test names its own `xdist_group` (the gallery: one group per example). The
# groups start longest first, by the seconds each took in a full run (tests/group_durations.json): with the
# long ones started early and the short ones left to fill in, both workers finish at about the same time
# (pytest-xdist's own order, the groups with the most tests first, started long groups of few tests near the
# end, where they ran alone while the other worker sat idle). A group not in the file (a new test file) is
# counted as its number of tests times the known groups' median seconds per test; after a full run with
# `--junitxml=junit.xml`,
# `python tests/scripts/group_durations.py junit.xml` refreshes the file. The file only orders: a stale or
# missing one costs balance, never a result.
_DURATIONS_FILE = os.path.join(os.path.dirname(__file__), "group_durations.json")


def _known_durations() -> dict[str, float]:
    import json

    try:
        with open(_DURATIONS_FILE) as f:
            return {str(k): float(v) for k, v in json.load(f)["seconds"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _group(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0]) if mark and mark.args else item.nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups off the marks
def pytest_collection_modifyitems(config, items):
    """One group per file unless a test names its own; longest groups first (group_durations.json), tests keep their
    order within a group."""
    groups = [_group(item) for item in items]
    for item, group in zip(items, groups):
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))
    count, first = {}, {}
    for i, g in enumerate(groups):
        count[g] = count.get(g, 0) + 1
        first.setdefault(g, i)
    known = _known_durations()
    per_test = sorted(known[g] / count[g] for g in count if g in known)
    typical = per_test[len(per_test) // 2] if per_test else 1.0
    seconds = {g: known.get(g, typical * n) for g, n in count.items()}
    order = sorted(range(len(items)), key=lambda i: (-seconds[groups[i]], first[groups[i]], i))
    items[:] = [items[i] for i in order]


class _CollectWorkerTallies:
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error):
        for k, v in getattr(node, "workeroutput", {}).get("reliability", {}).items():
            RELIABILITY[k] += v


def pytest_terminal_summary(terminalreporter):
    if RELIABILITY["bad inputs tried"] or RELIABILITY["faults injected"]:
        terminalreporter.write_line(
            "reliability: " + ", ".join(f"{v} {k}" for k, v in RELIABILITY.items()))
