"""Contraction plans: which products of pooled one-particle features to form, and how.

An ACE feature is a product A_{a_1} ... A_{a_nu} of pooled basis values over a sorted
multiset (a_1 <= ... <= a_nu) of one-particle basis indices. The plan enumerates the
multisets once, at construction, and evaluates them as a tree: each multiset of size
t is its prefix of size t-1 (evaluated at the previous level and shared by every
multiset with that prefix) times one more factor. One level is one vectorised
gather-multiply, so a batch costs ``order`` tensor operations whatever the count.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["enumerate_multisets", "ProductPlan", "build_plan",
           "Selection", "parse_selection", "optional_spec"]


def enumerate_multisets(degrees: Sequence[int], order: int, degree: int,
                        prune: Callable[[tuple[int, ...], int], bool] | None = None,
                        keep: Callable[[tuple[int, ...]], bool] | None = None
                        ) -> list[tuple[int, ...]]:
    """Sorted multisets of element indices of size 1..order whose degrees add up to at
    most ``degree``, ordered by size, then in depth-first (lexicographic) order.

    ``prune(prefix, used)`` (used: the degree the prefix spends) returns False to cut a
    prefix and everything that extends it; ``keep(multiset)`` decides which visited
    multisets are returned. Shared by the ``bip`` and ``lorentz`` families.
    """
    by_size: list[list[tuple[int, ...]]] = [[] for _ in range(order + 1)]

    def extend(start: int, prefix: tuple[int, ...], used: int) -> None:
        if prefix and (keep is None or keep(prefix)):
            by_size[len(prefix)].append(prefix)
        if len(prefix) == order:
            return
        for i in range(start, len(degrees)):
            d = used + degrees[i]
            if d > degree:
                continue
            nxt = (*prefix, i)
            if prune is None or prune(nxt, d):
                extend(i, nxt, d)

    extend(0, (), 0)
    return [m for size in by_size for m in size]


@dataclass
class ProductPlan:
    """Index tables for evaluating products level by level.

    ``levels[t]`` (t >= 1, for products of t + 1 factors) holds ``parent`` (node index at
    the previous level; level 0's nodes are the elements themselves) and ``factor``
    (element index) for each node. ``outputs`` lists, in output order, ``(level, node,
    part)`` with part 0 for the real and 1 for the imaginary part of the product.
    """

    n_elements: int
    levels: list[tuple[list[int], list[int]]] = field(default_factory=list)
    outputs: list[tuple[int, int, int]] = field(default_factory=list)


def build_plan(n_elements: int, outputs: Sequence[tuple[tuple[int, ...], int]]) -> ProductPlan:
    """Plan the evaluation of ``outputs``: (sorted multiset, part) pairs, part 0 = Re, 1 = Im."""
    order = max((len(term) for term, _ in outputs), default=1)
    nodes: list[dict[tuple[int, ...], int]] = [{(i,): i for i in range(n_elements)}]
    plan = ProductPlan(n_elements)
    for t in range(1, order):
        prefixes = sorted({term[: t + 1] for term, _ in outputs if len(term) > t})
        nodes.append({p: j for j, p in enumerate(prefixes)})
        plan.levels.append(([nodes[t - 1][p[:-1]] for p in prefixes], [p[-1] for p in prefixes]))
    plan.outputs = [(len(term) - 1, nodes[len(term) - 1][term], part) for term, part in outputs]
    return plan


_OPS: dict[str, Callable[[int, int], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt}
_CLAUSE = re.compile(r"^\s*([A-Za-z_]\w*)\s*(<=|>=|==|!=|<|>)\s*(-?\d+)\s*$")


@dataclass(frozen=True)
class Selection:
    """A conjunction of integer comparisons on column metadata, as energyflow's
    ``EFPSet('d<=5', 'n==3')`` selects graphs: ``Selection.parse("nu<=3", "d<=6")``
    keeps columns of body order at most 3 and degree at most 6. ``clauses`` are (name,
    operator, value); an empty selection keeps every column."""

    clauses: tuple[tuple[str, str, int], ...] = ()

    @classmethod
    def parse(cls, *texts: str, names: Sequence[str] = ()) -> Selection:
        """Parse clauses such as ``"d<=5"``; several per string may be joined by
        ``,`` or ``and``. ``names`` lists the metadata names allowed (all if empty)."""
        clauses = []
        for text in texts:
            for part in re.split(r",|\band\b", str(text)):
                if not part.strip():
                    continue
                m = _CLAUSE.match(part)
                if m is None:
                    raise ValueError(f"cannot read the selection {part.strip()!r}: write "
                                     "NAME OP INTEGER, e.g. 'd<=5' (OP one of "
                                     f"{', '.join(_OPS)})")
                name, op, value = m.group(1), m.group(2), int(m.group(3))
                if names and name not in names:
                    raise ValueError(f"unknown column property {name!r} in selection "
                                     f"{part.strip()!r}; choose from {', '.join(names)}")
                clauses.append((name, op, value))
        return cls(tuple(clauses))

    def __call__(self, meta: Mapping[str, int]) -> bool:
        return all(_OPS[op](meta[name], value) for name, op, value in self.clauses)

    def texts(self) -> list[str]:
        """The clauses as strings (JSON-serialisable, parse back to the same selection)."""
        return [f"{name}{op}{value}" for name, op, value in self.clauses]


def parse_selection(select: str | Sequence[str] | None, names: Sequence[str]) -> Selection:
    """A :class:`Selection` from a string, a list of strings or None (keep all)."""
    if select is None:
        return Selection()
    if isinstance(select, str):
        select = [select]
    return Selection.parse(*select, names=names)


def optional_spec(module: object) -> dict:
    """The spec entries a feature module writes only when set: ``select`` (its
    selection's clauses) and the species channel settings."""
    out: dict = {}
    if getattr(module, "select", None):
        out["select"] = list(module.select)
    if getattr(module, "species", None):
        out.update(species=list(module.species), channel_mode=module.channel_mode,
                   rank=module.rank, mixing_seed=module.mixing_seed)
        if getattr(module, "species_weight", "radial") != "radial":
            out["species_weight"] = module.species_weight
    return out
