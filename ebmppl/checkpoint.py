"""Atomic, checksummed checkpoints of a full training state.

A checkpoint is one file: a header line (magic, format version, payload
length, SHA-256 of the payload, JSON metadata and its own SHA-256) followed by an ``.npz``
payload with the state's leaves. It is written to a temporary file, flushed
and fsync-ed, read back and verified, and only then renamed over the
previous checkpoint: a crash or a full disk mid-write never replaces the last
good checkpoint, and a truncated or corrupted file is detected on load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ebmppl.distributed import on_primary, to_host

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint", "read_metadata", "CheckpointError", "FORMAT_VERSION",
           "CHECKPOINT_NAME"]


CHECKPOINT_NAME = "checkpoint.ebm"
"""File name of the checkpoint :func:`ebmppl.fit` writes into its ``checkpoint_dir``."""

MAGIC = b"EBMPPL-CKPT"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, corrupted, of another format, or does not fit the model.

    Examples
    --------
    >>> try:
    ...     load_checkpoint("no/such/checkpoint.ebm", {"w": jnp.zeros(2)})
    ... except CheckpointError as err:
    ...     print(err)
    no checkpoint at no/such/checkpoint.ebm.
    """


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _encode(state: Any, extras: dict[str, np.ndarray]) -> tuple[bytes, list[bool]]:
    leaves = jax.tree.leaves(state)
    is_key = [_is_key(x) for x in leaves]
    arrays = {f"leaf_{i:05d}": np.asarray(jax.random.key_data(x) if k else x) for i, (x, k) in enumerate(zip(leaves, is_key, strict=True))}
    arrays.update({f"extra_{name}": np.asarray(v) for name, v in extras.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), is_key


def _parse(raw: bytes, path: pathlib.Path) -> tuple[dict, bytes]:
    head, sep, payload = raw.partition(b"\n")
    if not sep or not head.startswith(MAGIC + b" "):
        raise CheckpointError(f"{path} is not an ebmppl checkpoint (bad header); it may be truncated or from another tool.")
    try:
        header = json.loads(head[len(MAGIC) + 1 :])
        if not isinstance(header, dict) or not {"length", "sha256", "format_version"} <= set(header):
            raise ValueError("fields missing")
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"{path} has a corrupted header: {err}.") from None
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {header.get('format_version')!r}; this ebmppl reads format {FORMAT_VERSION}."
        )
    if len(payload) != header["length"]:
        raise CheckpointError(f"{path} is truncated: {len(payload)} of {header['length']} payload bytes.")
    if hashlib.sha256(payload).hexdigest() != header["sha256"]:
        raise CheckpointError(f"{path} is corrupted: its checksum does not match.")
    if "metadata_sha256" in header and _metadata_digest(header.get("metadata")) != header["metadata_sha256"]:
        raise CheckpointError(f"{path} is corrupted: the checksum of its metadata does not match.")
    return header, payload


def _metadata_digest(metadata: Any) -> str:
    """SHA-256 of the canonical JSON of ``metadata`` (the header's own checksum; the payload has another)."""
    return hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()


def save_checkpoint(
    path: str | os.PathLike,
    state: Any,
    metadata: dict[str, Any] | None = None,
    extras: dict[str, np.ndarray] | None = None,
) -> pathlib.Path:
    """Write ``state`` (any pytree of arrays, PRNG keys included), JSON ``metadata`` and free-form
    ``extras`` arrays (e.g. the metric history; not checked against a template) atomically to ``path``.

    Under ``jax.distributed`` every process calls it: arrays sharded across
    processes are gathered (a collective), process 0 alone writes, and a failed
    write raises on every process (see :mod:`ebmppl.distributed`).

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ckpt.ebm"
    >>> _ = save_checkpoint(path, {"w": jnp.ones(3), "key": jax.random.key(0)}, {"step": 3})
    >>> state, meta = load_checkpoint(path, {"w": jnp.zeros(3), "key": jax.random.key(1)})
    >>> state["w"].tolist(), meta["step"]
    ([1.0, 1.0, 1.0], 3)
    """
    path = pathlib.Path(path)
    state, extras = to_host((state, extras or {}))  # every process: gathers what spans processes
    on_primary(_write, path, state, metadata, extras)
    return path


def _write(path: pathlib.Path, state: Any, metadata: dict[str, Any] | None, extras: dict[str, np.ndarray]) -> None:
    """The one writer's part of :func:`save_checkpoint`: temporary file, fsync, verify, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload, is_key = _encode(state, extras)
    header = {
        "format_version": FORMAT_VERSION,
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "is_key": is_key,
        "metadata": json.loads(json.dumps(metadata or {})),  # canonical JSON: what the reader will see
    }
    header["metadata_sha256"] = _metadata_digest(header["metadata"])
    blob = MAGIC + b" " + json.dumps(header).encode() + b"\n" + payload
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        _parse(tmp.read_bytes(), tmp)  # verify what reached the disk before it replaces anything
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a verified checkpoint (raises :class:`CheckpointError` if it is damaged).

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "c.ebm", {"w": jnp.ones(2)}, {"step": 7})
    >>> read_metadata(path)["step"]
    7
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}.")
    header, _ = _parse(path.read_bytes(), path)
    return header["metadata"]


def read_checkpoint(path: str | os.PathLike, *, data: bytes | None = None
                    ) -> tuple[dict[str, Any], list[np.ndarray], dict[str, np.ndarray]]:
    """The verified header, the state's arrays (in leaf order) and the extras of a checkpoint, without a template.

    Nothing in the file is executed: the header is JSON and the arrays are read
    with ``allow_pickle=False``. PRNG keys come back as their raw key data
    (``header["is_key"]`` marks them). ``data``: the file's bytes, already
    read (e.g. by process 0 and sent to every process, see
    :func:`ebmppl.distributed.broadcast_bytes`); ``path`` then only names it in messages.

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupted file, or another format version.

    Examples
    --------
    >>> import tempfile, jax.numpy as jnp
    >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "c.ebm", {"w": jnp.ones(2)}, {"step": 7})
    >>> header, arrays, extras = read_checkpoint(path)
    >>> header["metadata"]["step"], [a.tolist() for a in arrays], extras
    (7, [[1.0, 1.0]], {})
    """
    path = pathlib.Path(path)
    if data is None:
        if not path.is_file():
            raise CheckpointError(f"no checkpoint at {path}.")
        data = path.read_bytes()
    header, payload = _parse(data, path)
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = [npz[name] for name in sorted(npz.files) if name.startswith("leaf_")]
            extras = {name[len("extra_"):]: npz[name] for name in npz.files if name.startswith("extra_")}
    except ValueError as err:  # an object array (pickle) or a damaged archive: never unpickled
        raise CheckpointError(f"{path} holds arrays that cannot be read without executing code ({err}).") from None
    return header, arrays, extras


def load_checkpoint(path: str | os.PathLike, template: Any, *, with_extras: bool = False, data: bytes | None = None):
    """Load a checkpoint into the structure of ``template`` (a state of the same model and options).

    Returns ``(state, metadata)``, or ``(state, metadata, extras)`` with ``with_extras=True``.
    ``data``: the file's bytes when already read (see :func:`read_checkpoint`).

    Raises
    ------
    CheckpointError
        Missing, truncated or corrupted file; other format version; or leaves
        whose number, shapes or dtypes differ from ``template`` (a differently
        shaped model or other options).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.ebm"
    >>> _ = save_checkpoint(path, {"w": jnp.arange(3.0)}, {"step": 7})
    >>> state, meta = load_checkpoint(path, {"w": jnp.zeros(3)})
    >>> state["w"].tolist(), meta["step"]
    ([0.0, 1.0, 2.0], 7)
    >>> load_checkpoint(path, {"w": jnp.zeros(4)})
    Traceback (most recent call last):
    ...
    ebmppl.checkpoint.CheckpointError: ...: array 0 is float32[3] but the model expects float32[4]: ...
    """
    header, arrays, extras = read_checkpoint(path, data=data)
    path = pathlib.Path(path)
    leaves, treedef = jax.tree.flatten(template)
    if len(arrays) != len(leaves):
        raise CheckpointError(
            f"{path} holds {len(arrays)} arrays but the model's state has {len(leaves)}: it was written for "
            "another model or other options (network size, optimizer, sampler, buffer)."
        )
    out = []
    for i, (arr, ref, was_key) in enumerate(zip(arrays, leaves, header["is_key"], strict=True)):
        if was_key:
            out.append(jax.random.wrap_key_data(arr, impl=jax.random.key_impl(ref)))
            continue
        ref_shape, ref_dtype = np.shape(ref), jnp.result_type(ref)
        if arr.shape != ref_shape or arr.dtype != ref_dtype:
            raise CheckpointError(
                f"{path}: array {i} is {arr.dtype}{list(arr.shape)} but the model expects {ref_dtype}{list(ref_shape)}: "
                "the checkpoint was written for a differently shaped model."
            )
        out.append(jnp.asarray(arr))
    state = jax.tree.unflatten(treedef, out)
    return (state, header["metadata"], extras) if with_extras else (state, header["metadata"])
