"""The model versions one worker holds: load, verify, warm up, swap atomically, drain.

A version is loaded from the registry (whose ``open_artifact`` checks the integrity of the
whole version first), opened as an ONNX Runtime session, warmed up on a full batch, and
given its own :class:`Batcher`. Aliases (``production``, ``staging``) point at loaded
versions; moving one is a single assignment in the event loop, so a request sees either the
old version or the new one, never neither. The version an alias left is drained (queued and
computing requests finish) and unloaded, unless another alias or a client still uses it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.features.catalogue import CATALOGUE, FeatureKind
from vigie.registry import Registry
from vigie.runtime import OnnxModel
from vigie.serving import metrics
from vigie.serving.batcher import Batcher, Compute
from vigie.serving.types import Datatype, ModelMetadata, TensorSpec

logger = logging.getLogger(__name__)

#: The platform string advertised in model metadata.
PLATFORM = "onnxruntime_onnx"

#: The alias label of a version loaded because a client asked for it by id.
PINNED = "pinned"


@dataclass
class LoadedVersion:
    """One loaded, warmed model version and its batching queue."""

    model: str
    version: str
    onnx: OnnxModel
    metadata: ModelMetadata
    batcher: Batcher


def version_metadata(model: str, version: str, onnx: OnnxModel) -> ModelMetadata:
    """OIP metadata of a loaded version, from its ONNX inputs and output."""
    inputs = tuple(
        TensorSpec(name, Datatype.BYTES if kind == "tensor(string)" else Datatype.FP32, (-1, 1))
        for name, kind in onnx.inputs.items()
    )
    output = TensorSpec(onnx.output_name, Datatype.FP32, (-1,))
    return ModelMetadata(model, (version,), PLATFORM, inputs, (output,))


def spec_metadata(registry: Registry, model: str, version: str) -> ModelMetadata:
    """OIP metadata of a registered version not loaded yet, from its own ``spec.yaml``."""
    raw = yaml.safe_load(registry.open_artifact(model, version, "spec.yaml").read_text())
    inputs = tuple(
        TensorSpec(
            name,
            Datatype.BYTES if CATALOGUE[name].kind is FeatureKind.CATEGORICAL else Datatype.FP32,
            (-1, 1),
        )
        for name in raw["features"]
    )
    output = TensorSpec(str(raw["target"]["output"]), Datatype.FP32, (-1,))
    return ModelMetadata(model, (version,), PLATFORM, inputs, (output,))


def session_compute(onnx: OnnxModel) -> Compute:
    """The batch call of a session: ``[N]`` columns in, ``[N]`` float32 predictions out."""
    strings = {name for name, kind in onnx.inputs.items() if kind == "tensor(string)"}
    session, output = onnx.session, onnx.output_name

    def compute(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.float32]:
        feed = {
            name: (_texts(column) if name in strings else column).reshape(-1, 1)
            for name, column in columns.items()
        }
        result = session.run([output], feed)[0]
        return np.asarray(result, dtype=np.float32).reshape(-1)

    return compute


def _texts(column: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Strings for ONNX Runtime: a missing value is the empty string (out of vocabulary)."""
    values = column.tolist()
    if None not in values:
        return column
    return np.asarray(["" if value is None else value for value in values], dtype=object)


def warm_up(onnx: OnnxModel, compute: Compute, rows: int) -> None:
    """Run one row and one full batch of missing values, so the first request is not slow.

    Raises:
        VigieError: ARTIFACT_CORRUPT when the model cannot predict or returns a wrong shape.
    """
    for n in sorted({1, rows}):
        columns = {
            name: np.full(n, None, dtype=object)
            if kind == "tensor(string)"
            else np.full(n, np.nan, dtype=np.float32)
            for name, kind in onnx.inputs.items()
        }
        try:
            outputs = compute(columns)
        except Exception as err:  # onnxruntime raises several unrelated types
            raise VigieError(ErrorCode.ARTIFACT_CORRUPT, f"warm-up failed: {err}") from err
        if outputs.shape != (n,):
            raise VigieError(
                ErrorCode.ARTIFACT_CORRUPT,
                f"warm-up of {n} rows returned shape {outputs.shape}, expected ({n},)",
            )


class ModelRepository:
    """The loaded versions of one worker, and where its aliases point.

    Args:
        settings: Device, batch limits.
        registry: Where versions come from.
        executor: The thread pool batches and loads run in.
    """

    def __init__(self, settings: Settings, registry: Registry, executor: Executor) -> None:
        self._settings = settings
        self._registry = registry
        self._executor = executor
        self._loaded: dict[tuple[str, str], LoadedVersion] = {}
        self._versions: dict[str, tuple[str, ...]] = {}  # loaded(), rebuilt by _publish
        self._loading: dict[tuple[str, str], asyncio.Task[LoadedVersion]] = {}
        self._aliases: dict[str, dict[str, str]] = {}
        self._pinned: set[tuple[str, str]] = set()
        self._metadata: dict[tuple[str, str], ModelMetadata] = {}
        self._published: set[tuple[str, str, str]] = set()

    def get(self, model: str, version: str) -> LoadedVersion | None:
        """The loaded version, or None."""
        return self._loaded.get((model, version))

    def alias(self, model: str, alias: str) -> str | None:
        """The loaded version ``alias`` points at, or None."""
        return self._aliases.get(model, {}).get(alias)

    def aliases(self) -> dict[str, dict[str, str]]:
        """Model to alias to loaded version (a copy)."""
        return {model: dict(pointers) for model, pointers in self._aliases.items()}

    def serves(self, model: str) -> bool:
        """An alias of ``model`` points at a version, or a version of it is loaded."""
        return model in self._aliases or any(key[0] == model for key in self._loaded)

    def loaded(self) -> dict[str, tuple[str, ...]]:
        """Model names to their loaded version ids (a copy; the metadata of every request
        reads it, so it is built when a version is loaded or unloaded, not here)."""
        return dict(self._versions)

    def metadata(self, model: str, version: str) -> ModelMetadata:
        """Metadata of a version, loaded or only registered (read from its spec, cached).

        Raises:
            VigieError: NOT_FOUND / INVALID_INPUT from the registry, ARTIFACT_CORRUPT.
        """
        loaded = self._loaded.get((model, version))
        if loaded is not None:
            return loaded.metadata
        key = (model, version)
        if key not in self._metadata:
            self._metadata[key] = spec_metadata(self._registry, model, version)
        return self._metadata[key]

    async def ensure(self, model: str, version: str, *, pin: bool = False) -> LoadedVersion:
        """The loaded version, loading it (once, however many ask) if needed.

        Raises:
            VigieError: from the registry (NOT_FOUND, ARTIFACT_CORRUPT) or ONNX Runtime.
        """
        key = (model, version)
        if pin:
            self._pinned.add(key)
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        task = self._loading.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(model, version))
            self._loading[key] = task
            task.add_done_callback(lambda _: self._loading.pop(key, None))
        try:
            return await asyncio.shield(task)
        except VigieError:
            self._pinned.discard(key)
            raise

    async def _load(self, model: str, version: str) -> LoadedVersion:
        loop = asyncio.get_running_loop()
        settings = self._settings
        path = await loop.run_in_executor(
            self._executor, self._registry.open_artifact, model, version, "model.onnx"
        )
        onnx = await loop.run_in_executor(
            self._executor,
            partial(
                OnnxModel,
                path,
                settings.device,
                intra_op_threads=settings.serving_threads,
                rows_per_call=settings.max_batch_rows,
                cuda_tf32=settings.cuda_tf32,
            ),
        )
        compute = session_compute(onnx)
        await loop.run_in_executor(self._executor, warm_up, onnx, compute, settings.max_batch_rows)
        batcher = Batcher(
            compute,
            model=model,
            version=version,
            max_rows=settings.max_batch_rows,
            max_wait_s=settings.max_batch_wait_ms / 1000.0,
            executor=self._executor,
            inline_rows=settings.inline_batch_rows,
        )
        batcher.start()
        loaded = LoadedVersion(
            model, version, onnx, version_metadata(model, version, onnx), batcher
        )
        self._loaded[(model, version)] = loaded
        logger.info(
            "loaded %s version %s",
            model,
            version,
            extra={"model": model, "version": version, "providers": onnx.options["providers"]},
        )
        self._publish()
        return loaded

    async def point(self, model: str, alias: str, version: str) -> str | None:
        """Load ``version`` if needed, then move ``alias`` to it; drain what it left.

        Returns:
            The version the alias pointed at before, if any.

        Raises:
            VigieError: the new version failed to load; the alias did not move.
        """
        await self.ensure(model, version)
        pointers = self._aliases.setdefault(model, {})
        previous = pointers.get(alias)
        pointers[alias] = version  # the swap: one assignment, between two requests
        self._publish()
        if previous is not None and previous != version:
            await self.release_if_unused(model, previous)
        return previous

    async def unpoint(self, model: str, alias: str) -> None:
        """Unset ``alias`` (it was removed from the registry); drain what it left."""
        previous = self._aliases.get(model, {}).pop(alias, None)
        if not self._aliases.get(model):
            self._aliases.pop(model, None)
        self._publish()
        if previous is not None:
            await self.release_if_unused(model, previous)

    async def release_if_unused(self, model: str, version: str) -> None:
        """Drain and unload a version no alias and no client pin keeps."""
        key = (model, version)
        if key in self._pinned or version in self._aliases.get(model, {}).values():
            return
        loaded = self._loaded.pop(key, None)
        if loaded is None:
            return
        self._publish()
        await loaded.batcher.stop()
        logger.info("unloaded %s version %s (drained)", model, version)

    async def close(self) -> None:
        """Drain and unload every version."""
        for task in list(self._loading.values()):
            task.cancel()
        loaded, self._loaded = list(self._loaded.values()), {}
        self._aliases.clear()
        self._publish()
        await asyncio.gather(*(item.batcher.stop() for item in loaded), return_exceptions=True)

    def _publish(self) -> None:
        """Set ``vigie_loaded_versions``: 1 per loaded version and alias, 0 for the rest;
        rebuild what :meth:`loaded` returns."""
        versions: dict[str, list[str]] = {}
        for model, version in sorted(self._loaded, key=lambda k: (k[0], int(k[1]))):
            versions.setdefault(model, []).append(version)
        self._versions = {model: tuple(ids) for model, ids in versions.items()}
        current = {
            (model, version, alias)
            for model, pointers in self._aliases.items()
            for alias, version in pointers.items()
            if (model, version) in self._loaded
        } | {(model, version, PINNED) for model, version in self._pinned & set(self._loaded)}
        for labels in self._published - current:
            metrics.LOADED_VERSIONS.labels(*labels).set(0)
        for labels in current:
            metrics.LOADED_VERSIONS.labels(*labels).set(1)
        self._published = current
