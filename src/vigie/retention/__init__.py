"""Retention and erasure across every store of the platform.

``vigie governance retain`` (:func:`vigie.retention.retain.retain`) deletes what has outlived
the retention the data policy gives its store; ``vigie governance erase``
(:func:`vigie.retention.erase.erase`) takes one data subject out of every store. The
decisions (periods, cutoffs, subjects, redaction) are pure and live in
:mod:`vigie.governance.retention` and :mod:`vigie.governance.erasure`; this package reads and
rewrites the stores, which sit in every layer below it (logs, online store, registry,
snapshots, landing zone, warehouse). Both write what they did to the audit log.
"""
