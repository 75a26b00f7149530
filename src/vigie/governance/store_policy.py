"""The ``stores`` section of the data policy: how long each store of the platform keeps a record.

A store either names the source columns its records hold (``holds``: ``table.column``, or
``table.*`` for every column of a table) and keeps a record as long as the longest
retention among them, or, for a platform store whose records are not copies of source
columns (the payload log, the pipeline reports), declares a ``retention`` of its own.
:class:`vigie.governance.policy.DataPolicy` checks the names and the duration when the
policy is read; :mod:`vigie.governance.retention` turns a store into its retention period.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, model_validator


class StorePolicy(BaseModel):
    """The retention of one store.

    Attributes:
        description: What the store holds and what a record's age is measured from.
        holds: The source columns a record holds (``table.column`` or ``table.*``).
        retention: An ISO-8601 duration of the store's own, instead of ``holds``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str
    holds: tuple[str, ...] = ()
    retention: str | None = None

    @model_validator(mode="after")
    def _one_rule(self) -> StorePolicy:
        if bool(self.holds) == (self.retention is not None):
            raise ValueError(
                "a store declares either the source columns it holds (holds) or a retention "
                "of its own (retention), exactly one of them"
            )
        return self


def store_problems(
    stores: Mapping[str, StorePolicy], columns: Mapping[str, Mapping[str, object]]
) -> list[str]:
    """What is wrong with the ``stores`` section: a column it holds that is not classified.

    Args:
        stores: The section, store name to its policy.
        columns: Table name to its classified columns (``DataPolicy.tables``' columns).
    """
    problems = []
    for name, store in stores.items():
        for held in store.holds:
            table, _, column = held.partition(".")
            known = columns.get(table)
            if known is None or not column or (column != "*" and column not in known):
                problems.append(
                    f"stores.{name}.holds: {held!r} is not a classified column "
                    "(expected table.column or table.* of the tables section)"
                )
    return problems
