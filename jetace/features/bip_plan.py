"""The ``bip`` feature plan: which columns to compute and how, as plain data.

Built once by pure functions from the settings (order, degree, complete, mirror,
selection, channels), printable and testable without torch; :class:`BIPFeatures
<jetace.features.bip.BIPFeatures>` only turns its index lists into tensors and evaluates
them. The definition is in docs/definition.md, section 2.

Elements. A one-particle element is e = (c, k, l, n): channel c, Chebyshev degree k,
azimuthal and rapidity frequencies l, n, with k + |l| + |n| <= degree. Its pooled value
A_e is a sum over constituents; a column is (the real or imaginary part, or the mirror
mean, of) the product of A over a sorted multiset of elements whose l and n add up to 0.

Channels. With ``channels=1`` (the kinematic family) every element has c = 0. With C
species channels the pooled table holds one block per species channel (each constituent
weighted by its channel weight); the elements of the products are either those blocks
themselves (``channel_mode="full"``: products over every combination of channels) or
``rank`` linear mixtures of them per body order (``"reduced"``, tensor-reduced as in
arXiv:2210.01705: a product of nu factors takes all of them from one mixture of block
nu, so the count grows with ``rank``, not with C^nu). :attr:`BIPPlan.mixing_shape`
gives the shape of the mixing matrix the module applies; its values are not part of
the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jetace.features.plan import ProductPlan, Selection, build_plan, enumerate_multisets

__all__ = ["N_CHEB", "L_MAX", "N_MAX", "COLUMN_PROPERTIES", "Column", "BIPPlan", "bip_plan",
           "kinematic_elements"]

N_CHEB, L_MAX, N_MAX = 6, 3, 3  #: k < N_CHEB, |l| <= L_MAX, |n| <= N_MAX
#: the metadata a selection may compare (see :class:`Column`)
COLUMN_PROPERTIES = ("nu", "d", "k", "l", "n", "c")

Element = tuple[int, int, int, int]  # (c, k, l, n)


@dataclass(frozen=True)
class Column:
    """One output column: ``terms`` (one sorted multiset of element indices, or two for a
    mirror mean), ``part`` ("re", "im", "mirror", or "" for the real part of the paper's
    construction), ``name``, and its metadata ``meta``: ``nu`` body order, ``d`` degree
    sum(k + |l| + |n|), ``k``, ``l``, ``n`` the sums of k, |l|, |n|, ``c`` the number of
    distinct channels among the factors."""

    terms: tuple[tuple[int, ...], ...]
    part: str
    name: str
    meta: dict[str, int]


@dataclass
class BIPPlan:
    """Everything the ``bip`` module evaluates, as lists of ints and floats.

    * ``kinematic``: the (k, l, n) per species channel, in pooled-table order;
    * ``elements``: the product elements (c, k, l, n); element ``i`` is kinematic
      element ``i % len(kinematic)`` of product channel ``i // len(kinematic)``;
    * ``gather_rows`` (4 lists) and ``gather_signs`` (3 lists): per pooled element
      (species channel-major), the rows of the flattened pooled table that combine into
      Re A = cc + s0 ss and Im A = s1 sc + s2 cs;
    * ``outputs``: (multiset, part) with part 0 = Re, 1 = Im, in output order, and
      ``product`` the evaluation tree over them;
    * ``mirror_rows``: for mirror plans, two lists of output indices whose means are the
      columns; ``out_rows``: per tree level with outputs, (level, uses Im, takes all Re,
      rows into that level's [Re; Im] nodes); ``last_im``: whether the last level's
      imaginary parts are needed;
    * ``columns``: the output columns with names and metadata.
    """

    order: int
    degree: int
    complete: bool
    mirror: bool
    selection: Selection
    channels: int
    channel_mode: str
    rank: int
    kinematic: list[tuple[int, int, int]]
    elements: list[Element]
    gather_rows: list[list[int]]
    gather_signs: list[list[float]]
    outputs: list[tuple[tuple[int, ...], int]]
    product: ProductPlan
    mirror_rows: list[list[int]]
    out_rows: list[tuple[int, bool, bool, list[int]]]
    last_im: bool
    columns: list[Column] = field(default_factory=list)

    @property
    def num_features(self) -> int:
        return len(self.columns)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def mixing_shape(self) -> tuple[int, int] | None:
        """(product channels, species channels) of the mixing matrix, None without one."""
        if self.channel_mode != "reduced":
            return None
        return self.order * self.rank, self.channels

    def level_sizes(self) -> list[int]:
        """Nodes per tree level: the elements, then products of 2, 3, ... factors."""
        return [len(self.elements)] + [len(p) for p, _ in self.product.levels]

    def count_by(self, prop: str) -> dict[int, int]:
        """Number of columns per value of one metadata property (e.g. ``"nu"``)."""
        out: dict[int, int] = {}
        for col in self.columns:
            out[col.meta[prop]] = out.get(col.meta[prop], 0) + 1
        return dict(sorted(out.items()))

    def __str__(self) -> str:
        mode = "" if self.channels == 1 else (
            f", channels={self.channels} {self.channel_mode}"
            + (f" rank {self.rank}" if self.channel_mode == "reduced" else ""))
        kind = "mirror" if self.mirror else "complete" if self.complete else "default"
        sel = f", select {' and '.join(self.selection.texts())}" if self.selection.clauses else ""
        lines = [f"BIP plan: order {self.order}, degree {self.degree}, {kind}{mode}{sel}",
                 f"  {len(self.kinematic)} kinematic elements x {self.channels} species "
                 f"channel(s); {len(self.elements)} product elements",
                 f"  tree nodes per level: {self.level_sizes()}",
                 f"  {self.num_features} columns; by body order: {self.count_by('nu')}"]
        return "\n".join(lines)


def kinematic_elements(degree: int) -> list[tuple[int, int, int]]:
    """One-particle indices (k, l, n) with k + |l| + |n| <= degree, lexicographic."""
    return [(k, l, n) for k in range(N_CHEB) for l in range(-L_MAX, L_MAX + 1)
            for n in range(-N_MAX, N_MAX + 1) if k + abs(l) + abs(n) <= degree]


def _name(elements: Sequence[Element], term: tuple[int, ...], with_channel: bool) -> str:
    parts = []
    for i in term:
        c, k, l, n = elements[i]
        parts.append((f"c{c}" if with_channel else "") + f"k{k}l{l}n{n}".replace("-", "m"))
    return "bip_" + "_".join(parts)


def _meta(elements: Sequence[Element], term: tuple[int, ...]) -> dict[str, int]:
    es = [elements[i] for i in term]
    return {"nu": len(es), "d": sum(k + abs(l) + abs(n) for _, k, l, n in es),
            "k": sum(e[1] for e in es), "l": sum(abs(e[2]) for e in es),
            "n": sum(abs(e[3]) for e in es), "c": len({e[0] for e in es})}


def _gather(kinematic: Sequence[tuple[int, int, int]], species: int
            ) -> tuple[list[list[int]], list[list[float]]]:
    """Pooled-table rows and signs of every pooled element (species channel-major).

    The pooled table of a jet is (2 L_MAX + 1) theta rows (cos l theta, l = 0..L_MAX,
    then sin l theta, l = 1..L_MAX) times (species x N_CHEB x (2 N_MAX + 1)) columns
    (radial k of channel c, times cos n y, n = 0..N_MAX, then sin n y), flattened row by
    row. Element (k, l, n) with n >= 0 combines four entries: Re A = cc -+ ss,
    Im A = sc +- cs (lower signs for l < 0); n < 0 elements are conjugates of
    (k, -l, -n). A sine of frequency 0 has no entry: entry 0 is taken with sign 0.
    """
    width = species * N_CHEB * (2 * N_MAX + 1)

    def entry(sin_l: bool, l: int, c: int, k: int, sin_n: bool, n: int) -> int | None:
        if (sin_l and l == 0) or (sin_n and n == 0):
            return None
        theta_row = l + sin_l * L_MAX
        return theta_row * width + (c * N_CHEB + k) * (2 * N_MAX + 1) + n + sin_n * N_MAX

    rows: list[list[int]] = [[], [], [], []]
    signs: list[list[float]] = [[], [], []]  # of ss in Re, sc in Im, cs in Im
    for c in range(species):
        for k, l, n in kinematic:
            conj = -1.0 if n < 0 else 1.0
            l, n = (-l, -n) if n < 0 else (l, n)
            mirror = 1.0 if l < 0 else -1.0
            found = [entry(sin_l, abs(l), c, k, sin_n, n) for sin_l, sin_n in
                     ((False, False), (True, True), (False, True), (True, False))]
            for part, r in zip(rows, found, strict=True):
                part.append(r or 0)
            for part, r, sign in zip(signs, found[1:], (mirror, conj, -mirror * conj),
                                     strict=True):
                part.append(0.0 if r is None else sign)
    return rows, signs


def _terms(elements: Sequence[Element], order: int, degree: int, mode: str, rank: int
           ) -> list[tuple[int, ...]]:
    """Zero-charge multisets in output order: by size, then lexicographic; in reduced
    mode only multisets of one product channel of their own body order's block."""
    degs = [k + abs(l) + abs(n) for _, k, l, n in elements]

    def charge(ms: tuple[int, ...]) -> tuple[int, int]:
        return sum(elements[i][2] for i in ms), sum(elements[i][3] for i in ms)

    def prune(prefix: tuple[int, ...], used: int) -> bool:
        if mode == "reduced":
            block = elements[prefix[0]][0]
            if any(elements[i][0] != block for i in prefix) or len(prefix) > block // rank + 1:
                return False
        cl, cn = charge(prefix)
        return abs(cl) + abs(cn) <= degree - used  # the rest can cancel at most this much

    def keep(ms: tuple[int, ...]) -> bool:
        if mode == "reduced" and len(ms) != elements[ms[0]][0] // rank + 1:
            return False
        return charge(ms) == (0, 0)

    return enumerate_multisets(degs, order, degree, prune, keep)


def bip_plan(order: int, degree: int, complete: bool = False, mirror: bool = False,
             select: Selection | None = None, channels: int = 1, channel_mode: str = "full",
             rank: int = 1) -> BIPPlan:
    """The plan of ``BIPFeatures(order, degree, complete, mirror, ...)``.

    ``select`` keeps only the columns whose metadata it accepts (the product tree is
    built for those alone); ``channels``, ``channel_mode`` and ``rank`` as in the module
    docstring. Raises ValueError for invalid settings or an empty selection.
    """
    if order < 1 or degree < 0:
        raise ValueError(f"need order >= 1 and degree >= 0, got order={order}, degree={degree}")
    if complete and mirror:
        raise ValueError("complete=True and mirror=True cannot be combined")
    if channels < 1 or channel_mode not in ("full", "reduced") or rank < 1:
        raise ValueError(f"need channels >= 1, channel_mode 'full' or 'reduced' and rank "
                         f">= 1, got {channels}, {channel_mode!r}, {rank}")
    selection = select or Selection()
    kinematic = kinematic_elements(degree)
    mode = "full" if channels == 1 else channel_mode
    n_prod = order * rank if mode == "reduced" else channels
    elements: list[Element] = [(c, k, l, n) for c in range(n_prod) for k, l, n in kinematic]
    index = {e: i for i, e in enumerate(elements)}
    terms = _terms(elements, order, degree, mode, rank)

    def image(term: tuple[int, ...], sign_l: int, sign_n: int) -> tuple[int, ...]:
        return tuple(sorted(index[(c, k, sign_l * l, sign_n * n)]
                            for c, k, l, n in (elements[i] for i in term)))

    def accepted(term: tuple[int, ...]) -> bool:
        return selection(_meta(elements, term))

    named = channels > 1
    columns: list[Column] = []
    pairs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    if complete:
        outputs = []
        for term in terms:
            conj = image(term, -1, -1)
            if term <= conj and accepted(term):
                outputs.append((term, 0))
                if term != conj:
                    outputs.append((term, 1))
        columns = [Column((t,), "im" if part else "re",
                          _name(elements, t, named) + ("_im" if part else "_re"),
                          _meta(elements, t)) for t, part in outputs]
    elif mirror:
        # one pair (product, mirror image) per set {t, conj t, mirror t, conj mirror t}
        # of equal or mirrored real parts; the mirror image of a term is a term
        seen: set[tuple[int, ...]] = set()
        for term in terms:
            if term not in seen:
                seen.update((term, image(term, -1, -1), image(term, -1, 1), image(term, 1, -1)))
                if accepted(term):
                    pairs.append((term, image(term, -1, 1)))
        position = {t: i for i, t in enumerate(terms)}
        outputs = [(t, 0) for t in sorted({t for p in pairs for t in p}, key=position.get)]
        columns = [Column((a, b), "mirror", _name(elements, a, named) + "_mirror",
                          _meta(elements, a)) for a, b in pairs]
    else:
        outputs = [(t, 0) for t in terms if accepted(t)]
        columns = [Column((t,), "", _name(elements, t, named), _meta(elements, t))
                   for t, _ in outputs]
    if not columns:
        raise ValueError(f"the selection {' and '.join(selection.texts())} keeps no column")
    row = {term: i for i, (term, _) in enumerate(outputs)}
    mirror_rows = [[row[a] for a, _ in pairs], [row[b] for _, b in pairs]] if mirror else []
    rows, signs = _gather(kinematic, channels)
    product = build_plan(len(elements), outputs)
    last = len(product.levels)
    last_im = any(lvl == last and part for lvl, _, part in product.outputs)
    # outputs come grouped by level (terms are ordered by size): per level, the rows to
    # take from that level's [Re | Im] nodes
    sizes = [len(elements)] + [len(p) for p, _ in product.levels]
    levels = [lvl for lvl, _, _ in product.outputs]
    if levels != sorted(levels):
        raise AssertionError("product plan outputs must be grouped by level")
    out_rows = []
    for lvl, size in enumerate(sizes):
        taken = [part * size + node for l_, node, part in product.outputs if l_ == lvl]
        if taken:
            out_rows.append((lvl, any(r >= size for r in taken), taken == list(range(size)),
                             taken))
    return BIPPlan(order, degree, complete, mirror, selection, channels, mode, rank,
                   kinematic, elements, rows, signs, outputs, product, mirror_rows, out_rows,
                   last_im, columns)
