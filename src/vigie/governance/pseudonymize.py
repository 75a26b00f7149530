"""Keyed pseudonymisation of identifiers (HMAC-SHA256 tokens).

A token is ``"p_"`` followed by the first 24 hex digits (96 bits) of
``HMAC-SHA256(key, value)``. The same key always gives the same token for the same
value, in every table, so pseudonymised columns still join (``flights.tailnum`` with
``planes.tailnum``). Without the key a token cannot be recomputed from a guessed value,
which a plain hash would allow for a small space such as tail numbers.

Collision bound: for ``n`` distinct values the probability that any two share a token
is at most ``n**2 / 2**97``: about 1e-22 for the ~4,000 tail numbers, 1e-17 for a
million client ids.

Rotating the key changes every token: data pseudonymised under different keys no
longer joins. :meth:`Pseudonymizer.key_fingerprint` is recorded in lineage so a run
says which key it used without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vigie.errors import ErrorCode, VigieError

if TYPE_CHECKING:
    from vigie.config import Settings

#: Shortest key accepted, in bytes (128 bits).
MIN_KEY_BYTES = 16

#: Prefix of every token, so a pseudonymised value is recognisable as one.
TOKEN_PREFIX = "p_"

#: Hex digits of the HMAC kept in a token (96 bits).
TOKEN_HEX_DIGITS = 24

_FINGERPRINT_LABEL = b"vigie/pseudonym-key-fingerprint/v1"


class Pseudonymizer:
    """Turns identifiers into stable, keyed, non-reversible tokens.

    Args:
        key: The secret HMAC key, at least 16 bytes.

    Raises:
        VigieError: CONFIGURATION when the key is shorter than 16 bytes.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise VigieError(
                ErrorCode.CONFIGURATION,
                f"the pseudonymisation key is {len(key)} bytes long; at least "
                f"{MIN_KEY_BYTES} are required (set VIGIE_PSEUDONYM_KEY to a long random secret)",
                field="pseudonym_key",
            )
        self._key = bytes(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> Pseudonymizer:
        """A pseudonymizer with the configured key (generated once in local mode).

        Raises:
            VigieError: CONFIGURATION when no usable key is configured.
        """
        return cls(settings.pseudonym_key_bytes())

    def pseudonymize(self, value: str) -> str:
        """The token of one value, e.g. ``p_3f9a...`` (26 characters)."""
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return TOKEN_PREFIX + digest[:TOKEN_HEX_DIGITS]

    def pseudonymize_series(self, series: pd.Series) -> pd.Series:
        """Pseudonymise a column, hashing each distinct value once.

        Nulls (None, NaN, NA) stay null. Non-string values are converted with ``str``
        first, so ``1`` and ``"1"`` share a token but ``1.0`` does not.

        Args:
            series: The column to pseudonymise.

        Returns:
            A series with the same index and name, holding tokens (object dtype, or the
            input's string dtype when it had one).
        """
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        # One slot per distinct value plus a last one for nulls (code -1 indexes it).
        tokens = np.empty(len(uniques) + 1, dtype=object)
        tokens[:-1] = [self.pseudonymize(str(value)) for value in uniques]
        tokens[-1] = None
        result = pd.Series(tokens[codes], index=series.index, name=series.name, dtype=object)
        if isinstance(series.dtype, pd.StringDtype):
            return result.astype(series.dtype)
        return result

    def key_fingerprint(self) -> str:
        """A short public id of the key (16 hex digits), for lineage; never the key."""
        return hmac.new(self._key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Pseudonymizer(key_fingerprint={self.key_fingerprint()!r})"
