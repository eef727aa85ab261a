"""jetace.cost: the op counter, the analytic count from the plan, parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import jetace
from jetace.cost import bip_flops, count_flops, model_cost, synthetic_jets, trainable_parameters


def test_counter_rules_on_known_operations():
    x = torch.randn(10, 3, dtype=torch.float64)
    _, c = count_flops(lambda t: (t * 2 + 1).sum(), x)
    assert c.total == 30 + 30 + 30 and c.by_op == {"mul": 30, "add": 30, "sum": 30}
    lin = torch.nn.Linear(3, 5).double()
    _, c = count_flops(lin, x)
    assert c.total == 2 * 10 * 3 * 5 + 10 * 5  # multiply-adds and the bias
    _, c = count_flops(lambda t: torch.addcmul(t, t, t).view(-1)[::2].clone(), x)
    assert c.total == 2 * 30  # fused multiply-add; views and copies are free


@pytest.mark.parametrize("kw", [{"order": 3, "degree": 6, "mirror": True},
                                {"order": 4, "degree": 7},
                                {"order": 4, "degree": 7, "complete": True},
                                {"order": 3, "degree": 5, "mirror": True, "species": "default"},
                                {"order": 2, "degree": 4, "species": ["charge"],
                                 "channel_mode": "full"},
                                {"order": 4, "degree": 7, "mirror": True, "select": "nu<=3"}])
@pytest.mark.parametrize("multiplicity", [1, 9, 60])
def test_analytic_bip_count_equals_the_counted_operations(kw, multiplicity):
    f = jetace.BIPFeatures(**kw)
    p4, mask = synthetic_jets(6, multiplicity)
    if f.species:
        p4 = torch.cat([p4, torch.zeros(*p4.shape[:2], len(f.species), dtype=p4.dtype)], -1)
    _, counted = count_flops(f, p4, mask)
    assert bip_flops(f.plan, multiplicity)["total"] * 6 == counted.total
    # torch's FlopCounterMode counts only the matrix products: ours agree on those
    with FlopCounterMode(display=False) as fc:
        f(p4, mask)
    assert fc.get_total_flops() == counted.by_op.get("bmm", 0) + counted.by_op.get("mm", 0)


def test_model_cost_of_a_linear_tagger():
    f = jetace.BIPFeatures(3, 6, mirror=True)
    p4, mask = synthetic_jets(200, 20)
    x = f(p4, mask)
    y = np.r_[np.zeros(100), np.ones(100)]
    x[y == 1, 0] += 5 * x[:, 0].std()
    tagger = jetace.LinearTagger().fit(x, y)
    cost = model_cost(f, tagger, multiplicity=20)
    assert cost.parameters == trainable_parameters(tagger) == f.num_features + 1
    assert cost.features == f.num_features
    assert cost.analytic_feature_flops == cost.feature_flops  # one count, two ways
    assert 2 * f.num_features <= cost.classifier_flops <= 6 * f.num_features
    d = cost.as_dict()
    assert d["flops_per_jet"] == cost.feature_flops + cost.classifier_flops
    assert model_cost(f, None, 60).flops_per_jet > cost.feature_flops  # grows with P
    with pytest.raises(ValueError, match="multiplicity"):
        model_cost(f, tagger, 0)


def test_lorentz_is_counted_too():
    f = jetace.LorentzACEFeatures(order=3, degree=6)
    cost = model_cost(f, None, multiplicity=30)
    assert cost.analytic_feature_flops is None and cost.feature_flops > 0
    assert cost.breakdown["bmm"] > 0
