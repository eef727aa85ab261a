"""An affine map of BIP features evaluated without forming the features.

A linear tagger on standardised features computes ``((x - mean) / std) @ coef.T +
intercept``: an affine map of the raw features x, ``x @ W.T + b``. Every BIP feature is
(the mean of) the real or imaginary part of one node of the product tree
(:meth:`~jetace.features.bip.BIPFeatures.levels`), so ``x @ W.T`` is a sum over the tree's
levels of one matrix product each, ``W_level @ [Re; Im]``, taken as each level is formed
(in complex arithmetic: :meth:`~jetace.features.bip.BIPFeatures.complex_levels`). The
(B, F) feature matrix, its assembly, the mirror means and the transposes are never
made: scoring with a linear model costs about the products alone.
"""

from __future__ import annotations

import torch

from jetace.features.bip import BIPFeatures

__all__ = ["FusedLinear"]


class FusedLinear(torch.nn.Module):
    """``features(p4, mask) @ weight.T + bias`` for BIP ``features``, in one pass.

    Parameters
    ----------
    features : the :class:`~jetace.features.bip.BIPFeatures` module (shared, not copied).
    weight : (K, F) weights on the raw features.
    bias : (K,) offsets.

    The folded weights are kept in float64 and cast to the input's dtype. ``forward(p4,
    mask)`` and ``forward_packed(flat, counts)`` take what the feature module takes and
    return (B, K) in the input's dtype. Equal to the unfused map up to rounding (the sum
    runs in another order). ``num_features`` is K, ``spec`` that of ``features``.
    """

    def __init__(self, features: BIPFeatures, weight: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        if not isinstance(features, BIPFeatures):
            raise TypeError(f"FusedLinear needs BIPFeatures, got {type(features).__name__}")
        weight = torch.as_tensor(weight, dtype=torch.float64).cpu()
        bias = torch.as_tensor(bias, dtype=torch.float64).cpu().reshape(-1)
        if weight.ndim != 2 or bias.shape != weight.shape[:1]:
            raise ValueError(f"expected weight (K, F) and bias (K,), got "
                             f"{tuple(weight.shape)} and {tuple(bias.shape)}")
        self.features = features
        self.num_features = int(weight.shape[0])
        folded = features.level_weights(weight)
        self._levels = sorted(folded)
        for lvl, w in folded.items():
            self.register_buffer(f"_w{lvl}", w, persistent=False)
        self.register_buffer("_bias", bias[:, None], persistent=False)

    @property
    def spec(self) -> dict:
        return self.features.spec

    @property
    def species(self) -> tuple[str, ...]:
        """The species channels whose weights follow the momenta in the input."""
        return self.features.species

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.features.evaluate(p4, mask, self._contract, self.num_features)

    def forward_packed(self, flat: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return self.features.evaluate_packed(flat, counts, self._contract, self.num_features)

    def _contract(self, a_re: torch.Tensor, a_im: torch.Tensor) -> torch.Tensor:
        """(B, K) from pooled A (n_elements, B): each level's share as it is formed, one
        matrix product over its [Re, Im] pairs (complex products: half the passes)."""
        b = a_re.shape[1]
        out = self._bias.to(a_re.dtype).expand(-1, b)
        levels = self.features.complex_levels(torch.complex(a_re, a_im))
        for lvl, z in enumerate(levels):
            if lvl not in self._levels:
                continue
            w = getattr(self, f"_w{lvl}").to(a_re.dtype)
            n = len(z)
            pairs = torch.view_as_real(z).view(n, 2 * b)  # Re and Im interleaved per jet
            out = out + (w[:, :n] @ pairs).view(-1, b, 2)[..., 0]
            if w.shape[1] > n:
                out = out + (w[:, n:] @ pairs).view(-1, b, 2)[..., 1]
            if lvl == self._levels[-1]:
                break  # no level above has outputs
        return out.T
