"""What a model costs: trainable parameters, feature count and FLOPs per jet.

Two ways to count, which the tests check against each other:

* :func:`count_flops` runs any torch callable under a dispatch mode and counts every
  arithmetic aten operation it executes: an elementwise operation (add, mul, log,
  sqrt, comparisons, where, clamp, activations ...) 1 FLOP per output element, a fused
  multiply-add (addcmul, addcdiv) 2, a matrix product (mm, bmm, addmm, convolution)
  2 m n k (plus the bias), a reduction (sum, cumsum, norm, softmax ...) 1 per input
  element (softmax and normalisations a few); moving data (views, copies, gathers,
  concatenation, indexing) is free. The same rule counts jetace's feature pipelines
  and any peer network (ParticleNet, Particle Transformer), so ratios are like for
  like. torch's own ``FlopCounterMode`` counts only the matrix products.
* :func:`bip_flops` is the analytic count of the ``bip`` pipeline from its plan
  (:class:`jetace.features.bip_plan.BIPPlan`): per constituent (kinematics, basis,
  pooling) and per jet (gathers into elements, the product tree, the mirror means).

:func:`model_cost` reports both for a feature module with a tagger at a given
constituent multiplicity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCount", "count_flops", "bip_flops", "ModelCost", "model_cost", "synthetic_jets",
           "trainable_parameters", "model_cost_fields", "REPORT_MULTIPLICITY"]

#: constituents per jet at which ``jetace evaluate`` reports FLOPs per jet
REPORT_MULTIPLICITY = 60

_ELEMENTWISE = frozenset("""
add sub rsub mul div neg reciprocal abs sign sgn sqrt rsqrt exp exp2 expm1 log log2 log10
log1p sin cos tan asin acos atan atan2 sinh cosh tanh asinh acosh atanh sigmoid relu gelu
silu elu leaky_relu hardtanh softplus erf erfc pow square clamp clamp_min clamp_max maximum
minimum fmax fmin where gt lt ge le eq ne logical_and logical_or logical_not remainder fmod
floor ceil round trunc frac lerp hypot copysign threshold_backward nan_to_num mish hardswish
hardsigmoid""".split())
_FUSED = frozenset({"addcmul", "addcdiv"})
_REDUCTIONS = frozenset("""sum mean amax amin max min prod cumsum cumprod logsumexp var std
var_mean std_mean linalg_vector_norm norm any all argmax argmin topk sort""".split())
_NORMALISING = {"_softmax": 5, "softmax": 5, "_log_softmax": 5, "log_softmax": 5,
                "native_layer_norm": 8, "native_batch_norm": 8, "_native_batch_norm_legit": 8,
                "_native_batch_norm_legit_no_training": 4, "native_group_norm": 8}


def _numel(x: Any) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _first_tensor(args: tuple) -> torch.Tensor | None:
    return next((a for a in args if isinstance(a, torch.Tensor)), None)


def _matmul_flops(name: str, args: tuple, out: Any) -> int | None:
    if name in ("mm", "bmm"):
        a, b = args[0], args[1]
        return 2 * a.numel() * b.shape[-1]
    if name in ("addmm", "baddbmm", "addbmm"):
        a, b = args[1], args[2]
        return 2 * a.numel() * b.shape[-1] + _numel(out)
    if name == "addmv":
        return 2 * args[1].numel() + _numel(out)
    if name in ("mv", "dot", "vdot"):
        return 2 * args[0].numel()
    if name in ("convolution", "_convolution", "cudnn_convolution", "mkldnn_convolution"):
        w = args[1]
        per_out = 2 * w[0].numel()  # in_channels / groups x kernel, multiply and add
        return _numel(out) * per_out + (_numel(out) if args[2] is not None else 0)
    return None


@dataclass
class OpCount:
    """FLOPs counted by :func:`count_flops`: ``total`` and per aten operation ``by_op``."""

    total: int = 0
    by_op: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, flops: int) -> None:
        if flops:
            self.total += flops
            self.by_op[name] = self.by_op.get(name, 0) + flops


class _Counter(TorchDispatchMode):
    def __init__(self, count: OpCount):
        super().__init__()
        self.count = count

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")  # in-place as out of place
        flops = _matmul_flops(name, args, out)
        if flops is None:
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if name in _ELEMENTWISE:
                flops = _numel(first)
            elif name in _FUSED:
                flops = 2 * _numel(first)
            elif name in _REDUCTIONS:
                flops = _numel(_first_tensor(args))
            elif name in _NORMALISING:
                flops = _NORMALISING[name] * _numel(_first_tensor(args))
            elif name in ("index_add", "scatter_add", "index_put") and len(args) > 3:
                flops = _numel(args[3] if name == "index_add" else args[-1])
            else:
                flops = 0
        self.count.add(name, int(flops))
        return out


def count_flops(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, OpCount]:
    """Run ``fn(*args, **kwargs)`` without gradients, counting its FLOPs (module
    docstring); returns (its output, the :class:`OpCount`)."""
    count = OpCount()
    with torch.no_grad(), _Counter(count):
        out = fn(*args, **kwargs)
    return out, count


def synthetic_jets(n_jets: int, multiplicity: int, dtype: torch.dtype = torch.float64,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Massless constituents of ~0.1-50 GeV within 0.4 rad of a common direction, every
    jet with exactly ``multiplicity`` of them: p4 (n_jets, multiplicity, 4), mask."""
    gen = torch.Generator().manual_seed(seed)
    pt = 0.1 + 50 * torch.rand(n_jets, multiplicity, generator=gen, dtype=torch.float64)
    eta = 0.4 * (torch.rand(n_jets, multiplicity, generator=gen, dtype=torch.float64) - 0.5)
    phi = 0.4 * (torch.rand(n_jets, multiplicity, generator=gen, dtype=torch.float64) - 0.5)
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    e = torch.sqrt(px * px + py * py + pz * pz)
    p4 = torch.stack([e, px, py, pz], -1).to(dtype)
    return p4, torch.ones(n_jets, multiplicity, dtype=torch.bool)


def bip_flops(plan: Any, multiplicity: int) -> dict[str, float]:
    """Analytic FLOPs per jet of the ``bip`` features from their plan, by stage.

    With P constituents, K = N_CHEB radial functions, T = 2 L_MAX + 1 azimuthal and
    Y = 2 N_MAX + 1 rapidity rows, C channels: ``kinematics`` (axis sums, reflection,
    r_t, azimuth, rapidity, m_T: KIN_PER_CONSTITUENT per constituent and KIN_PER_JET
    per jet), ``basis`` (u, the Chebyshev and Fourier recurrences and the radial x
    rapidity table: per constituent), ``pooling`` (the batched product 2 T P C K Y),
    ``elements`` (5 per pooled element: Re, Im from four sums; a mixing 2 x C per
    product element and part), ``products`` (per tree node: 3 for the real part, 3 for
    the imaginary part where needed) and ``outputs`` (2 per mirror mean).
    """
    from jetace.features.bip_plan import L_MAX, N_CHEB, N_MAX

    p, k, t, y = multiplicity, N_CHEB, 2 * L_MAX + 1, 2 * N_MAX + 1
    c = plan.channels
    # the shared 2u, u w and 2 per recurrence step (per channel), the C - 1 species
    # weights times t_M (or the mask, counting channels)
    cheb = 2 * k - 3 if c == 1 else c * (2 * k - 1) - 2
    fourier = 2 * (6 * (L_MAX - 1) + 2)  # per angle: (m_max - 1) complex steps, cos/sin
    basis = p * (BASIS_PER_CONSTITUENT + cheb + fourier + c * k * y) + BASIS_PER_JET
    pooling = 2 * t * p * c * k * y
    n_pooled = c * len(plan.kinematic)
    elements = 5 * n_pooled
    if plan.mixing_shape is not None:
        elements += 2 * 2 * plan.mixing_shape[1] * len(plan.elements)
    levels = plan.product.levels
    products = 0
    for i, (parent, _) in enumerate(levels):
        last = i == len(levels) - 1
        products += len(parent) * (3 if last and not plan.last_im else 6)
    outputs = 2 * len(plan.columns) if plan.mirror else 0
    kinematics = KIN_PER_CONSTITUENT * p + KIN_PER_JET
    out = {"kinematics": kinematics, "basis": basis, "pooling": pooling,
           "elements": elements, "products": products, "outputs": outputs}
    out["total"] = sum(out.values())
    return {key: float(v) for key, v in out.items()}


#: elementwise operations per constituent of the axis-frame kinematics and per jet of
#: the axis (jetace.frames: counted from the code, checked by tests/test_cost.py)
KIN_PER_CONSTITUENT, KIN_PER_JET = 49, 33
#: per constituent besides the recurrences: r, the sum of r, ln r, u, the radial weight
#: log(1 + m_T^2) x mask; per jet: the shift ln(sum r) - U_SHIFT
BASIS_PER_CONSTITUENT, BASIS_PER_JET = 8, 3


def trainable_parameters(model: Any) -> int:
    """Trainable numbers of a torch module, or of a fitted tagger (the parameters of its
    ``as_module()``; 0 for a tagger without one). Feature modules have none, and fixed
    buffers (feature scaling, channel mixing) are not counted."""
    if not isinstance(model, torch.nn.Module):
        model = model.as_module() if hasattr(model, "as_module") else None
    return 0 if model is None else int(sum(p.numel() for p in model.parameters()))


@dataclass
class ModelCost:
    """Cost of features + classifier per jet at ``multiplicity`` constituents."""

    multiplicity: int
    features: int
    parameters: int
    feature_flops: float
    classifier_flops: float
    analytic_feature_flops: float | None = None
    breakdown: dict[str, float] = field(default_factory=dict)

    @property
    def flops_per_jet(self) -> float:
        return self.feature_flops + self.classifier_flops

    def as_dict(self) -> dict[str, Any]:
        return {"multiplicity": self.multiplicity, "features": self.features,
                "parameters": self.parameters, "flops_per_jet": self.flops_per_jet,
                "feature_flops_per_jet": self.feature_flops,
                "classifier_flops_per_jet": self.classifier_flops,
                "analytic_feature_flops_per_jet": self.analytic_feature_flops,
                "flops_method": "every arithmetic aten op (jetace.cost.count_flops)"}


def model_cost(features: torch.nn.Module, head: Any = None, multiplicity: int = 60,
               n_jets: int = 64, dtype: torch.dtype = torch.float32) -> ModelCost:
    """Parameters and FLOPs per jet of ``features`` (a jetace feature module) followed by
    ``head`` (a fitted tagger with ``as_module()``, a torch module on feature matrices,
    or None), on synthetic jets of exactly ``multiplicity`` constituents."""
    if int(multiplicity) < 1:
        raise ValueError(f"multiplicity must be at least 1, got {multiplicity}")
    p4, mask = synthetic_jets(n_jets, int(multiplicity), dtype)
    if getattr(features, "species", ()):
        weights = torch.zeros(*p4.shape[:2], len(features.species), dtype=dtype)
        p4 = torch.cat([p4, weights], -1)
    x, fcount = count_flops(features, p4, mask)
    module = head.as_module() if hasattr(head, "as_module") and not isinstance(
        head, torch.nn.Module) else head
    ccount = OpCount()
    if module is not None:
        module = module.to(dtype) if isinstance(module, torch.nn.Module) else module
        _, ccount = count_flops(module, x.to(dtype))
    plan = getattr(features, "plan", None)
    analytic = bip_flops(plan, int(multiplicity)) if plan is not None else None
    return ModelCost(int(multiplicity), int(x.shape[1]),
                     trainable_parameters(head) if head is not None else 0,
                     fcount.total / n_jets, ccount.total / n_jets,
                     analytic["total"] if analytic else None,
                     {k: v / n_jets for k, v in sorted(fcount.by_op.items())})


def model_cost_fields(model: Any, multiplicity: int = REPORT_MULTIPLICITY) -> dict[str, Any]:
    """``parameters``, ``features``, ``flops_per_jet`` and ``flops_multiplicity`` of a
    :class:`jetace.model_file.JetaceModel` (features in its dtype, then its tagger), as
    ``jetace evaluate`` reports them."""
    cost = model_cost(model.features, model.tagger, multiplicity,
                      dtype=model.feature_dtype)
    return {"parameters": cost.parameters, "features": cost.features,
            "flops_per_jet": cost.flops_per_jet, "flops_multiplicity": cost.multiplicity}
