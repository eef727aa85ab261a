"""Contraction plans: which products of pooled one-particle features to form, and how.

An ACE feature is a product A_{a_1} ... A_{a_nu} of pooled basis values over a sorted
multiset (a_1 <= ... <= a_nu) of one-particle basis indices. The plan enumerates the
multisets once, at construction, and evaluates them as a tree: each multiset of size
t is its prefix of size t-1 (evaluated at the previous level and shared by every
multiset with that prefix) times one more factor. One level is one vectorised
gather-multiply, so a batch costs ``order`` tensor operations whatever the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["enumerate_products", "ProductPlan", "build_plan"]


def enumerate_products(charges: Sequence[tuple[int, ...]], degrees: Sequence[int], order: int,
                       degree: int) -> list[tuple[int, ...]]:
    """Sorted multisets of element indices, of size 1..order, whose charges sum to zero
    and whose degrees add up to at most ``degree``; ordered by size, then lexicographically.

    ``charges[i]`` is the tuple of conserved integer charges of element i (for BIP the
    azimuthal and rapidity frequencies (l, n)); ``degrees[i]`` its non-negative degree,
    which must bound the sum of its absolute charges (used to prune the search).
    """
    n = len(charges)
    if any(sum(abs(c) for c in ch) > d for ch, d in zip(charges, degrees, strict=True)):
        raise ValueError("each element's degree must bound the sum of its absolute charges")
    width = len(charges[0]) if n else 0
    by_size: list[list[tuple[int, ...]]] = [[] for _ in range(order + 1)]

    def extend(start: int, prefix: tuple[int, ...], total: tuple[int, ...], deg: int) -> None:
        if prefix and not any(total):
            by_size[len(prefix)].append(prefix)
        if len(prefix) == order:
            return
        for i in range(start, n):
            d = deg + degrees[i]
            if d > degree:
                continue
            t = tuple(a + b for a, b in zip(total, charges[i], strict=True))
            # the remaining factors can cancel at most (degree - d) units of charge
            if sum(abs(c) for c in t) <= degree - d:
                extend(i, (*prefix, i), t, d)

    extend(0, (), (0,) * width, 0)
    return [term for size in by_size for term in size]


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
