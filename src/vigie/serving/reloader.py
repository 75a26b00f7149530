"""Hot reload: follow the registry's aliases and move the worker's versions with them.

Every ``reload_interval_s`` the reloader reads where ``production`` (and ``staging``, when
a canary or shadow is configured) point. When one moved, the new version is loaded in the
background (the registry checks its integrity), warmed up and swapped in; the old one is
drained. A version that fails to load leaves the old one serving, is logged with the
reason, counted in ``vigie_reloads_total{outcome="failure"}`` and not retried until its
alias moves again.
"""

from __future__ import annotations

import asyncio
import logging

from vigie.registry import Registry
from vigie.serving import metrics
from vigie.serving.repository import ModelRepository
from vigie.serving.routing import Router

logger = logging.getLogger(__name__)

PRODUCTION, STAGING = "production", "staging"


class Reloader:
    """Keeps a repository's alias pointers equal to the registry's.

    Args:
        registry: Where aliases are read.
        repository: The worker's loaded versions.
        router: Says whether staging versions are wanted.
    """

    def __init__(self, registry: Registry, repository: ModelRepository, router: Router) -> None:
        self._registry = registry
        self._repository = repository
        self._router = router
        self._failed: set[tuple[str, str, str]] = set()
        self._seen: set[str] = set()
        self.expected: frozenset[str] = frozenset()

    def expect_current(self) -> None:
        """Readiness needs the models that had a production version at start-up."""
        self.expected = frozenset(self._seen)

    async def watch(self, interval_s: float) -> None:
        """Refresh forever, every ``interval_s`` seconds (cancel to stop)."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.refresh()
            except Exception:  # a broken registry read must not end the watcher
                logger.exception("reading the registry's aliases failed; retrying")

    async def refresh(self) -> None:
        """Load and swap in every version whose alias moved since the last refresh."""
        wanted = await asyncio.to_thread(self._read)
        self._seen = {model for model, pointers in wanted.items() if PRODUCTION in pointers}
        for model, pointers in wanted.items():
            for alias, version in pointers.items():
                if self._repository.alias(model, alias) != version:
                    await self._move(model, alias, version)
        for model, pointers in self._repository.aliases().items():
            for alias in set(pointers) - set(wanted.get(model, {})):
                await self._repository.unpoint(model, alias)

    def _read(self) -> dict[str, dict[str, str]]:
        aliases = (PRODUCTION, STAGING) if self._router.wants_staging else (PRODUCTION,)
        wanted: dict[str, dict[str, str]] = {}
        for model in self._registry.models():
            pointers = self._registry.aliases(model)
            chosen = {a: pointers[a] for a in aliases if a in pointers}
            if chosen:
                wanted[model] = chosen
        return wanted

    async def _move(self, model: str, alias: str, version: str) -> None:
        key = (model, alias, version)
        if key in self._failed:
            return
        try:
            previous = await self._repository.point(model, alias, version)
        except Exception as err:  # whatever broke the load, the current version keeps serving
            self._failed.add(key)
            metrics.RELOADS.labels(model, "failure").inc()
            logger.error(
                "could not load %s version %s for %s; the current version keeps serving: %s",
                model,
                version,
                alias,
                err,
                extra={"model": model, "version": version, "alias": alias},
            )
            return
        metrics.RELOADS.labels(model, "success").inc()
        logger.info(
            "%s %s is now version %s (was %s)",
            model,
            alias,
            version,
            previous or "unset",
            extra={"model": model, "version": version, "alias": alias, "previous": previous},
        )
