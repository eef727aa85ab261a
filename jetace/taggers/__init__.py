"""Taggers: estimators on feature matrices, scikit-learn style.

Every tagger is registered under a short ``kind`` name (see :mod:`jetace.taggers.base`)
so that model files can store and rebuild it without pickling code.
"""

from __future__ import annotations

from jetace.taggers.base import TAGGERS, Tagger, register, tagger_from_state

__all__ = ["TAGGERS", "Tagger", "register", "tagger_from_state"]
