"""ACE features as a scikit-learn transformer, for pipelines that start from jets.

:class:`ACETransformer` turns jets into a numpy feature matrix, so that
``make_pipeline(ACETransformer(...), LinearTagger())`` fits, predicts, cross-validates,
pickles and runs inside ``GridSearchCV`` (the feature settings become grid parameters).
Jets may come as

* an awkward Array of jets as :func:`jetace.read_jets` returns (or its ``constituents``),
* a list of per-jet arrays of shape (n_i, 4), as energyflow hands them out: rows
  (E, px, py, pz) in GeV, or (pt, y, phi[, pid]) with ``columns="ptyphi"`` (converted
  with :func:`jetace.formats.p4_from_ptyphi` and the mass convention ``mass``),
* a padded numpy array (n_jets, P, 4) in either column order; all-zero rows are padding,
* a list of awkward records (what scikit-learn's cross-validation makes of an awkward
  Array when it picks jets).

Constituents are ordered by falling pT and cut at ``max_particles``, as everywhere in
jetace (:func:`jetace.io.to_padded`).
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from jetace.errors import InputError

__all__ = ["ACETransformer", "COLUMNS", "jets_to_padded"]

#: column orders of per-jet arrays
COLUMNS = ("epxpypz", "ptyphi")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _constituents_of(rows: list[np.ndarray], columns: str, mass: str) -> ak.Array:
    """Per-jet (n_i, >= 3 or 4) arrays -> jagged constituents (energy, px, py, pz)."""
    from jetace.formats import p4_from_ptyphi

    width = 3 if columns == "ptyphi" else 4
    for i, r in enumerate(rows):
        if r.ndim != 2 or r.shape[1] < width:
            raise InputError(f"jet {i}: expected an array of shape (n_particles, "
                             f"{'3 or 4' if width == 3 else 4}) in column order {columns!r}, "
                             f"got shape {r.shape}")
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    flat = np.concatenate([r[:, :4] if r.shape[1] >= 4 else r for r in rows]) if len(rows) \
        else np.zeros((0, width))
    flat = np.asarray(flat, dtype=np.float64)
    if columns == "ptyphi":
        pid = flat[:, 3] if flat.shape[1] >= 4 else None
        e, px, py, pz = p4_from_ptyphi(flat[:, 0], flat[:, 1], flat[:, 2], pid, mass)
    else:
        e, px, py, pz = flat[:, 0], flat[:, 1], flat[:, 2], flat[:, 3]
    fields = {"energy": e, "px": px, "py": py, "pz": pz}
    return ak.zip({k: ak.unflatten(np.ascontiguousarray(v), counts) for k, v in fields.items()})


def _as_constituents(X: Any, columns: str, mass: str) -> ak.Array:
    """Any accepted jet input (module docstring) as jagged constituents."""
    if isinstance(X, ak.Array):
        return X.constituents if "constituents" in ak.fields(X) else X
    if isinstance(X, ak.Record):
        return ak.Array([X]).constituents
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim != 3:
            raise InputError(f"padded jets must have shape (n_jets, n_particles, 4), got "
                             f"{X.shape}")
        real = np.any(X != 0, axis=2)
        return _constituents_of([x[m] for x, m in zip(X, real, strict=True)], columns, mass)
    rows = list(X)
    if rows and isinstance(rows[0], ak.Record):
        return ak.Array(rows).constituents
    return _constituents_of([np.asarray(r, dtype=np.float64) for r in rows], columns, mass)


def jets_to_padded(X: Any, max_particles: int = 128, columns: str = "epxpypz",
                   mass: str = "massless", device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Jets in any form :class:`ACETransformer` takes -> (p4 (B, P, 4) = (E, px, py, pz)
    in GeV, mask (B, P)) as :func:`jetace.io.to_padded` gives them."""
    from jetace.io import to_padded

    return to_padded(_as_constituents(X, columns, mass), max_particles, device=device,
                     dtype=dtype)


class ACETransformer(TransformerMixin, BaseEstimator):
    """Jets -> ACE features (numpy, (n_jets, n_features)), as a scikit-learn transformer.

    Parameters
    ----------
    family : ``"bip"`` (:class:`~jetace.features.bip.BIPFeatures`) or ``"lorentz"``
        (:class:`~jetace.features.lorentz.LorentzACEFeatures`).
    order, degree : body order and polynomial degree of the expansion.
    mirror : bip only: mirror-symmetrised features (the default of ``jetace train``).
    max_particles : constituents kept per jet (the hardest by pT).
    options : further constructor arguments of the feature module (e.g.
        ``{"lmax": 2, "irc_safe": True}`` for lorentz), or None.
    columns : column order of per-jet and padded arrays: ``"epxpypz"`` (E, px, py, pz)
        or ``"ptyphi"`` (pt, rapidity, phi[, PDG id]) as energyflow stores them.
    mass : mass convention of ``"ptyphi"`` input (:data:`jetace.formats.MASSES`).
    device : where the features are computed (``"cpu"``, ``"cuda"``, ``"auto"``).
    dtype : ``"float32"`` (default) or ``"float64"``: dtype of the computation and of the
        returned matrix.
    batch_size : jets per forward pass.

    ``fit`` only builds the feature module (there is nothing to learn). Fitted
    attributes: ``features_`` (the torch module), ``n_features_out_``.
    """

    def __init__(self, family: str = "bip", order: int = 4, degree: int | None = 7,
                 mirror: bool = True, max_particles: int = 128,
                 options: dict[str, Any] | None = None, columns: str = "epxpypz",
                 mass: str = "massless", device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 4096):
        # scikit-learn's rule: store the arguments as given; fit checks them
        self.family, self.order, self.degree, self.mirror = family, order, degree, mirror
        self.max_particles, self.options = max_particles, options
        self.columns, self.mass = columns, mass
        self.device, self.dtype, self.batch_size = device, dtype, batch_size

    def spec(self) -> dict[str, Any]:
        """The feature spec (:func:`jetace.features.features_from_spec`) of the settings."""
        spec: dict[str, Any] = {"family": self.family, "order": self.order,
                                "degree": self.degree, **dict(self.options or {})}
        if self.family == "bip":
            spec["mirror"] = self.mirror
        elif self.mirror:
            raise InputError(f"mirror applies to the bip family only, not {self.family!r}: "
                             "set mirror=False")
        return spec

    def fit(self, X: Any = None, y: Any = None) -> ACETransformer:
        """Build the feature module (checking the settings); X and y are not used."""
        from jetace.features import features_from_spec
        from jetace.formats import MASSES
        from jetace.run.options import resolve_device

        if self.columns not in COLUMNS:
            raise InputError(f"unknown columns {self.columns!r}; choose one of "
                             f"{', '.join(COLUMNS)}")
        if self.mass not in MASSES:
            raise InputError(f"unknown mass convention {self.mass!r}; choose one of "
                             f"{', '.join(MASSES)}")
        if self.dtype not in _DTYPES:
            raise InputError(f"dtype must be one of {', '.join(_DTYPES)}, got {self.dtype!r}")
        if int(self.max_particles) < 1 or int(self.batch_size) < 1:
            raise InputError("max_particles and batch_size must be positive")
        try:
            module = features_from_spec(self.spec())
        except (TypeError, ValueError) as exc:
            raise InputError(f"invalid feature settings {self.spec()}: {exc}") from exc
        self.device_ = resolve_device(self.device)
        self.features_ = module.to(self.device_).eval()
        self.n_features_out_ = int(module.num_features)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features of the jets X (module docstring), numpy (n_jets, n_features_out_)."""
        check_is_fitted(self)
        dtype = _DTYPES[self.dtype]
        constituents = _as_constituents(X, self.columns, self.mass)
        out = []
        step = int(self.batch_size)
        for i in range(0, len(constituents), step):
            p4, mask = jets_to_padded(constituents[i:i + step], int(self.max_particles),
                                      device=self.device_, dtype=dtype)
            with torch.no_grad():
                out.append(self.features_(p4, mask).cpu().numpy())
        if not out:
            return np.zeros((0, self.n_features_out_), dtype=np.dtype(self.dtype))
        return np.concatenate(out)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Feature names as :func:`jetace.outputs.feature_columns` writes them."""
        from jetace.outputs import feature_columns

        check_is_fitted(self)
        return np.asarray(feature_columns(self.features_, self.family), dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # jets, not a 2-D matrix
        tags.requires_fit = True
        return tags
