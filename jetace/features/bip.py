"""Boost-invariant polynomials (BIPs): the ``bip`` feature family of arXiv:2207.08272.

Construction (docs/definition.md, section 2), per jet with constituents
p_j = (E, px, py, pz):

1. reflect every constituent with the Householder matrix that maps the jet axis to e_z;
2. per constituent: r = r_t + 1e-4 (r_t the transverse momentum to the axis, GeV),
   azimuth theta, rapidity y along the axis, t_M = ln(E^2 - z^2 + 1), x = r / sum r,
   u = (ln x + 4.7) / 6;
3. one-particle basis phi_{k,l,n} = T_k(u) exp(i l theta) exp(i n y) t_M, with k < 6 and
   l, n in -3..3, pooled over constituents: A_{k,l,n} = sum_j phi_{k,l,n}(j);
4. features Re prod_t A_{k_t,l_t,n_t} over sorted multisets of 1..order factors with
   sum l = sum n = 0 and sum (k + |l| + |n|) <= degree.

Rotations about the jet axis shift every theta and boosts along it shift every y, so
the zero-sum products are invariant (also under permutations and zero padding).
The reference code uses t_M = ln sqrt(E^2 - z^2 + 1), half of ours: that scales each
product of nu factors by 2^-nu, which feature standardisation removes.

``complete=True`` keeps one product of each complex-conjugate pair (their real parts
are equal, so the default construction duplicates about 40% of its columns) and adds
its imaginary part, also invariant; self-conjugate products are real and give one
column. The feature count is the same as the default one.

``mirror=True`` symmetrises under the reflection theta -> -theta about the jet axis (a
mirror plane containing the axis), which maps the product of elements (k, l, n) to that
of (k, -l, n): each output is the mean of a product's real part and its mirror image's.
Together with rotations about the axis that makes the features invariant under all of
O(2) around it. A linear function of these is a linear function of the default
features (with equal weights on mirror partners), so nothing outside the BIP span is
added; what is dropped is the mirror-odd part, which top and QCD jets share (neither
prefers a handedness about the jet axis). Duplicates go too: (4, 7) gives 694 columns,
(3, 6) 178, and the tagger sees no column that only adds noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from jetace.basis import chebyshev, fourier_powers
from jetace.features.bip_plan import COLUMN_PROPERTIES, L_MAX, N_CHEB, N_MAX, bip_plan
from jetace.features.plan import optional_spec, parse_selection
from jetace.frames import axis_frame_kinematics
from jetace.species import channel_mixing, input_hint, store_species_settings

__all__ = ["BIPFeatures", "R_OFFSET", "U_SHIFT", "U_SCALE"]

R_OFFSET = 1e-4  #: GeV added to every r_t (part of the definition)
U_SHIFT, U_SCALE = 4.7, 6.0  #: u = (ln x + U_SHIFT) / U_SCALE
CPU_CHUNK = 512  #: jets per internal sub-batch on CPU (see BIPFeatures.forward)

#: last step of an evaluation: pooled A (Re, Im), each (n_elements, B) -> (B, width)
Finish = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _cropped(p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded jets without the trailing columns that are padding in every jet."""
    used = torch.nonzero(mask.any(dim=0))
    size = int(used[-1]) + 1 if len(used) else 1
    return p4[:, :size], mask[:, :size]


class BIPFeatures(torch.nn.Module):
    """Boost-invariant polynomial features of jets.

    Parameters
    ----------
    order : int
        Maximal number of factors in a product (body order), >= 1.
    degree : int
        Maximal total degree sum (k + |l| + |n|) of a product, >= 0.
    complete : bool
        Drop duplicated real parts and add imaginary parts (see module docstring).
    mirror : bool
        Mean of each product and its mirror image theta -> -theta, one column per pair
        (see module docstring); not combined with ``complete``.
    select : str or list of str, optional
        Keep only the columns whose metadata pass every clause, as energyflow's
        ``EFPSet('d<=5')``: ``"nu<=3"`` (body order), ``"d<=6"`` (degree sum
        k + |l| + |n|), also ``k``, ``l``, ``n`` (sums of k, |l|, |n|); see
        :class:`jetace.features.plan.Selection`. The product tree is built for the kept
        columns alone.

    The plan (:attr:`plan`, a :class:`jetace.features.bip_plan.BIPPlan`) holds the
    columns with their metadata; ``print(module.plan)`` summarises it.

    ``forward(p4, mask)``: ``p4`` (B, P, 4) constituents (E, px, py, pz) in GeV, ``mask``
    (B, P) bool; returns (B, num_features) on p4's device in p4's dtype (numpy arrays in:
    computed on the CPU, a numpy array out). Padded positions
    must be masked; a jet with no constituents gives all-zero features.

    Feature counts (default construction): (order, degree) = (3, 6): 311, (3, 7): 595,
    (4, 7): 1473, (4, 8): 3205; with ``mirror``: 178, 296, 694, 1356.
    """

    def __init__(self, order: int = 4, degree: int = 7, complete: bool = False,
                 mirror: bool = False, select: str | Sequence[str] | None = None,
                 species: str | Sequence[str] | None = None, channel_mode: str = "reduced",
                 rank: int = 2, mixing_seed: int = 0, species_weight: str = "radial") -> None:
        super().__init__()
        self.order, self.degree = int(order), int(degree)
        self.complete, self.mirror = bool(complete), bool(mirror)
        selection = parse_selection(select, COLUMN_PROPERTIES)
        self.select = selection.texts()
        store_species_settings(self, species, channel_mode, rank, mixing_seed, species_weight)
        self.n_inputs = 4 + len(self.species)  #: columns of p4: momenta, channel weights
        self.plan = plan = bip_plan(self.order, self.degree, self.complete, self.mirror,
                                    selection, 1 + len(self.species), self.channel_mode,
                                    self.rank)
        # (k, l, n) of one channel, (c, k, l, n) with species channels
        elements = [e if self.species else e[1:] for e in plan.elements]
        self.terms = [tuple(elements[i] for i in col.terms[0]) for col in plan.columns]
        self.feature_names = plan.feature_names
        self.num_features = plan.num_features
        self.n_elements = len(plan.elements)

        def buffer(name: str, values, dtype=torch.long) -> None:
            self.register_buffer(name, torch.tensor(values, dtype=dtype), persistent=False)

        buffer("_mirror_rows", plan.mirror_rows or [[], []])
        buffer("_el_rows", [r for part in plan.gather_rows for r in part])
        self.register_buffer("_el_signs", torch.tensor(plan.gather_signs, dtype=torch.float64
                                                       )[..., None], persistent=False)
        self._n_levels = len(plan.product.levels)
        for t, (parent, factor) in enumerate(plan.product.levels):
            buffer(f"_parent{t}", parent)
            buffer(f"_factor{t}", factor)
        self._last_im = plan.last_im
        self._out_rows: list[tuple[int, bool, bool]] = []  # (level, uses Im, takes all Re)
        for lvl, uses_im, take_all, rows in plan.out_rows:
            self._out_rows.append((lvl, uses_im, take_all))
            buffer(f"_out{lvl}", rows)
        shape = plan.mixing_shape
        self._mixed = shape is not None
        if self._mixed:
            self.register_buffer("_mixing", channel_mixing(shape, self.rank, self.mixing_seed),
                                 persistent=False)

    @property
    def spec(self) -> dict:
        """JSON-serialisable description; ``features_from_spec(spec)`` rebuilds this module."""
        spec = {"family": "bip", "order": self.order, "degree": self.degree,
                "complete": self.complete, "mirror": self.mirror}
        return {**spec, **optional_spec(self)}

    def extra_repr(self) -> str:
        sel = f", select={self.select}" if self.select else ""
        return (f"order={self.order}, degree={self.degree}, complete={self.complete}, "
                f"mirror={self.mirror}{sel}, num_features={self.num_features}")

    def pooled_basis(self, p4: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts of A for every one-particle element, each (n_elements, B)."""
        m = mask.to(p4.dtype)
        kin = axis_frame_kinematics(p4[..., :4], m)
        r = kin.rt + R_OFFSET  # > 0 at every position, padding included
        # u = (ln(r / sum r) + shift) / scale, the sum over real constituents only; finite
        # at padded positions too, where the radial weight below is zero
        shift = torch.log((r * m).sum(dim=1, keepdim=True).clamp_min(R_OFFSET)) - U_SHIFT
        u = (torch.log(r) - shift) * (1.0 / U_SCALE)
        # particle index last in the left factor, so broadcasts run over contiguous memory
        weight = torch.log1p(kin.mt2) * m
        if self.species:  # per channel: "all" (t_M), then the species weights, (B, C, P)
            species = p4[..., 4:].transpose(1, 2)  # (B, C - 1, P)
            # "radial": the channel weight times t_M; "count": the channel weight alone
            species = species * (weight if self.species_weight == "radial" else m)[:, None]
            channels = torch.cat([weight[:, None], species], 1)
            radial = chebyshev(u[:, None].expand_as(channels), N_CHEB, dim=2,
                               weight=channels).flatten(1, 2)  # (B, C K, P)
        else:
            radial = chebyshev(u, N_CHEB, dim=1, weight=weight)  # (B, K, P)
        y = kin.y  # finite everywhere; padded positions have radial weight 0
        # cos(n y) for n = 0..N, sin(n y) for n = 1..N, (B, 2 N + 1, P); so for theta
        fy = fourier_powers(torch.cos(y), torch.sin(y), N_MAX, dim=1)
        ftheta = fourier_powers(kin.cos_theta, kin.sin_theta, L_MAX, dim=1)
        # radial x {cos, sin}(n y) per particle, (B, K, 2 N + 1, P)
        ry = radial[:, :, None] * fy[:, None]
        # sums of {cos, sin}(l theta) x radial x {cos, sin}(n y) for l >= 0 only: those of
        # l < 0 follow from cos(-l theta) = cos(l theta), sin(-l theta) = -sin(l theta).
        # (7, P) @ (P, 42) per jet, the fastest layout for the batched matmul
        pooled = torch.bmm(ftheta, ry.flatten(1, 2).transpose(1, 2))
        b = p4.shape[0]  # a tensor while exported to ONNX: the batch axis stays dynamic
        # rows (theta row, k, y row) of the table, each (b,); Re and Im of A combine four
        # of them per element
        table = pooled.view(b, -1).T.contiguous()
        cc, ss, sc, cs = table.index_select(0, self._el_rows).view(4, -1, b).unbind(0)
        signs = self._el_signs.to(p4.dtype)
        a_re, a_im = torch.addcmul(cc, ss, signs[0]), torch.addcmul(sc * signs[1], cs, signs[2])
        if self._mixed:  # product channels: mixtures of the species channels
            mix = self._mixing.to(p4.dtype)
            n = len(self.plan.kinematic)
            a_re = (mix @ a_re.view(mix.shape[1], n * b)).view(-1, b)
            a_im = (mix @ a_im.view(mix.shape[1], n * b)).view(-1, b)
        return a_re, a_im

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if isinstance(p4, np.ndarray):  # numpy in, numpy out (computed on the CPU)
            return self.forward(torch.from_numpy(p4), torch.as_tensor(mask)).numpy()
        return self.evaluate(p4, mask, self._products, self.num_features)

    def forward_packed(self, flat: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Features of packed constituents (:func:`jetace.io.to_packed`): ``flat`` (N, 4)
        (E, px, py, pz) in GeV, jet after jet, ``counts`` (B,) constituents per jet with
        sum N. Equals ``forward`` on the padded form up to float rounding, without
        building it: each sub-batch of similar multiplicity is gathered at its own width.
        """
        return self.evaluate_packed(flat, counts, self._products, self.num_features)

    def evaluate(self, p4: torch.Tensor, mask: torch.Tensor, finish: Finish,
                 width: int) -> torch.Tensor:
        """``finish(a_re, a_im)`` of the pooled basis of padded jets, (B, width): the
        sub-batching of ``forward`` with another last step (``_products`` gives the
        features, :class:`jetace.features.fused.FusedLinear` an affine map of them)."""
        if p4.ndim != 3 or p4.shape[-1] != self.n_inputs or mask.shape != p4.shape[:2]:
            raise ValueError(f"expected p4 (B, P, {self.n_inputs}) and mask (B, P), got "
                             f"{tuple(p4.shape)} and {tuple(mask.shape)}"
                             f"{input_hint(self.species)}")
        mask = mask.to(torch.bool)
        if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
            return finish(*self.pooled_basis(p4, mask))
        if not self._use_sub_batches(p4, len(p4)):
            return self._finish(*_cropped(p4, mask), finish, width)

        def take(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return _cropped(p4[idx], mask[idx])

        return self._sub_batches(mask.sum(dim=1), take, p4, finish, width)

    def evaluate_packed(self, flat: torch.Tensor, counts: torch.Tensor, finish: Finish,
                        width: int) -> torch.Tensor:
        """As :meth:`evaluate`, for packed constituents (see :meth:`forward_packed`)."""
        counts = counts.to(device=flat.device, dtype=torch.long)
        if flat.ndim != 2 or flat.shape[-1] != self.n_inputs or counts.ndim != 1 \
                or int(counts.sum()) != len(flat) or bool((counts < 0).any()):
            raise ValueError(f"expected flat (N, {self.n_inputs}) and counts (B,) of sum N, "
                             f"got {tuple(flat.shape)} and {tuple(counts.shape)} of sum "
                             f"{int(counts.sum())}{input_hint(self.species)}")
        empty = counts == 0
        if bool(empty.any()):
            # a jet without constituents reads nothing: its row is ``finish`` of an
            # all-zero pooled table, and the others are computed without it (flat holds
            # no rows of its own, so the remaining counts still add up to len(flat))
            out = flat.new_empty(len(counts), width)
            zero = flat.new_zeros(self.n_elements, 1)
            out[empty] = finish(zero, zero).to(out.dtype)
            out[~empty] = self.evaluate_packed(flat, counts[~empty], finish, width)
            return out
        # padding slots repeat the jet's own last constituent, masked out like any
        # padding: no jet reads another's values (a non-finite neighbour cannot leak in)
        # and no padded copy of flat is made. Gathered per component plane ((4, N): a
        # free transpose of to_packed's column-major flat), the (B, P, 4) result is a
        # view of contiguous planes, the layout the kinematics work on. The index and
        # the (1/0) mask come from clamps: comparisons and torch.where cost several
        # times more on CPU.
        planes = (flat if len(flat) else flat.new_zeros(1, self.n_inputs)).T
        starts = torch.cumsum(counts, 0) - counts

        def take(idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n = counts[idx]
            slot = torch.arange(max(int(n.max()) if len(n) else 0, 1), device=flat.device)
            beyond = (slot - (n - 1)[:, None]).clamp_min(0)  # slots past the jet's last
            index = starts[idx, None] + slot - beyond
            mask = (n.to(flat.dtype)[:, None] - slot.to(flat.dtype)).clamp(0, 1)
            p4 = planes.index_select(1, index.view(-1)).view(len(planes), *index.shape)
            return p4.permute(1, 2, 0), mask

        if not self._use_sub_batches(flat, len(counts)):
            return self._finish(*take(torch.arange(len(counts), device=flat.device)),
                                finish, width)
        return self._sub_batches(counts, take, flat, finish, width)

    @staticmethod
    def _use_sub_batches(p: torch.Tensor, n_jets: int) -> bool:
        return (p.device.type == "cpu" and n_jets > CPU_CHUNK and not p.requires_grad
                and p.dtype in (torch.float32, torch.float64))

    def _sub_batches(self, counts: torch.Tensor,
                     take: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                     like: torch.Tensor, finish: Finish, width: int) -> torch.Tensor:
        """CPU features of a large batch from sub-batches that stay in cache, of jets of
        similar multiplicity (sorted by ``counts``), each cropped to its longest jet:
        about twice as fast as one batch of 4096. ``take(idx)`` gives the padded (p4,
        mask) of the jets ``idx``.
        The sub-batches run one after the other: threads belong to the runner
        (:mod:`jetace.run.features` computes several batches at once).
        """
        order = torch.argsort(counts)
        out = like.new_empty(len(counts), width)
        rows = out.numpy()  # numpy's row scatter is a few times faster than index_copy_
        for idx in order.split(CPU_CHUNK):
            rows[idx.numpy()] = self._finish(*take(idx), finish, width).contiguous().numpy()
        return out

    def _finish(self, p4: torch.Tensor, mask: torch.Tensor, finish: Finish,
                width: int) -> torch.Tensor:
        """``finish`` of the pooled basis of padded jets, (B, width)."""
        if len(p4) == 0:
            return p4.new_zeros(0, width)
        return finish(*self.pooled_basis(p4, mask))

    @property
    def level_sizes(self) -> list[int]:
        """Nodes per product level: the elements, then the products of 2, 3, ... factors."""
        return self.plan.level_sizes()

    def levels(self, a_re: torch.Tensor, a_im: torch.Tensor
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Real and imaginary parts (n_nodes, B) of every level's products, from pooled A
        (n_elements, B): the elements, then the products of 2, 3, ... factors. The last
        level's imaginary part is None unless an output uses it."""
        yield a_re, a_im
        z_re, z_im = a_re, a_im
        for t in range(self._n_levels):
            parent, factor = getattr(self, f"_parent{t}"), getattr(self, f"_factor{t}")
            pr, fr = z_re.index_select(0, parent), a_re.index_select(0, factor)
            pi, fi = z_im.index_select(0, parent), a_im.index_select(0, factor)
            z_re = torch.addcmul(pr * fr, pi, fi, value=-1)
            z_im = torch.addcmul(pr * fi, pi, fr) \
                if t + 1 < self._n_levels or self._last_im else None
            yield z_re, z_im

    def complex_levels(self, a: torch.Tensor) -> Iterator[torch.Tensor]:
        """As :meth:`levels`, in complex arithmetic: A (n_elements, B) complex in, every
        level's products (n_nodes, B) complex out (half the gathers and passes; not
        exportable to ONNX, which has no complex tensors)."""
        yield a
        z = a
        for t in range(self._n_levels):
            z = (z.index_select(0, getattr(self, f"_parent{t}"))
                 * a.index_select(0, getattr(self, f"_factor{t}")))
            yield z

    def level_weights(self, weight: torch.Tensor) -> dict[int, torch.Tensor]:
        """Fold weights on the features into weights on the product levels.

        ``weight`` (K, num_features); returns {level: (K, n) tensor} such that
        ``features @ weight.T`` equals the sum over levels of ``w[:, :s] @ Re + w[:, s:]
        @ Im`` of that level's nodes (s nodes; n = s, or 2 s where imaginary parts are
        outputs). Levels without outputs are left out.
        """
        if weight.ndim != 2 or weight.shape[1] != self.num_features:
            raise ValueError(f"expected weights (K, {self.num_features}), got "
                             f"{tuple(weight.shape)}")
        if self.mirror:  # feature j = (z[a_j] + z[b_j]) / 2 over the assembled outputs z
            wz = weight.new_zeros(weight.shape[0], int(self._mirror_rows.max()) + 1)
            for rows in self._mirror_rows:
                wz.index_add_(1, rows, weight * 0.5)
        else:
            wz = weight
        sizes, out, start = self.level_sizes, {}, 0
        for lvl, uses_im, take_all in self._out_rows:
            rows = torch.arange(sizes[lvl]) if take_all else getattr(self, f"_out{lvl}")
            w = wz.new_zeros(wz.shape[0], sizes[lvl] * (2 if uses_im else 1))
            out[lvl] = w.index_add_(1, rows.to(w.device), wz[:, start:start + len(rows)])
            start += len(rows)
        return out

    def _products(self, a_re: torch.Tensor, a_im: torch.Tensor) -> torch.Tensor:
        """Evaluate the product plan from pooled A (n_elements, B); returns (B, F).

        Feature-major layout (n_nodes, B): every gather copies whole rows, and the result
        is the transpose of a contiguous (F, B) tensor. Purely functional (no writes into
        slices), so that it exports to ONNX as it runs.
        """
        levels = list(self.levels(a_re, a_im))
        parts = []
        for lvl, uses_im, take_all in self._out_rows:
            re, im = levels[lvl]
            if take_all:
                parts.append(re)
            else:
                src = torch.cat([re, im]) if uses_im else re
                parts.append(src.index_select(0, getattr(self, f"_out{lvl}")))
        z = torch.cat(parts) if len(parts) > 1 else parts[0]
        if self.mirror:
            z = (z.index_select(0, self._mirror_rows[0])
                 + z.index_select(0, self._mirror_rows[1])) * 0.5
        return z.T
