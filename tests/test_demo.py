"""``jetace demo`` end to end on the shipped sample (small feature setting for speed)."""

from __future__ import annotations

import json

from jetace.cli import main
from jetace.model_file import load_model


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--order", "2", "--degree", "4", "--max-jets", "1000",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert [r["model"].split(" + ")[1] for r in summary["models"]] == ["linear", "mlp"]
    for row in summary["models"]:
        assert f"{row['auc']:.4f}" in printed
        assert row["auc"] > 0.85  # top vs QCD separates clearly even with 2-body features
        assert row["rejection_at_0.3"] > row["rejection_at_0.5"] > 1
        assert row["parameters"] > 0 and f"{row['flops_per_jet'] / 1e6:9.3f}" in printed
    linear, mlp = summary["models"]
    assert linear["parameters"] == summary["num_features"] + 1
    assert mlp["flops_per_jet"] > linear["flops_per_jet"]  # a larger head costs more
    assert summary["n_train"] + summary["n_test"] == 2000
    assert (out / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = load_model(out / "demo_linear.model")
    assert model.num_features == summary["num_features"]
