"""benchmarks/top_tagging_reference.py on small synthetic files in the dataset's layout."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import numpy as np
import pytest
from formatfiles import write_top_tagging
from toyjets import toy_jets

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "top_tagging_reference.py"


def _split(path, n, seed):
    qcd = toy_jets(n, seed=seed, n_prongs=1, min_particles=10, max_particles=40)
    top = toy_jets(n, seed=seed + 100, n_prongs=3, min_particles=10, max_particles=40)
    order = np.random.default_rng(seed).permutation(2 * n)
    jets = [(qcd + top)[i] for i in order]
    return write_top_tagging(path, jets, order >= n, n_max=40)


@pytest.mark.slow
def test_reference_benchmark_on_a_synthetic_dataset(tmp_path, capsys):
    for split, n, seed in (("train", 120, 1), ("val", 40, 2), ("test", 60, 3)):
        _split(tmp_path / f"{split}.h5", n, seed)
    main = runpy.run_path(str(SCRIPT), run_name="top_tagging_reference")["main"]
    out = tmp_path / "result.json"
    result = main(["--data", str(tmp_path), "--max-jets", "200", "--out", str(out),
                   "--device", "cpu"])
    text = capsys.readouterr().out
    assert "| tagger | AUC | accuracy | 1/eps_B @ eps_S=0.3 |" in text
    assert "ParticleNet | 0.9858" in text and "PELICAN (1k parameters) | 0.9835" in text
    rows = json.loads(out.read_text())["jetace"]
    assert [r["model"].split()[1] for r in rows] == ["linear", "mlp"]
    for r in rows:
        assert r["n_train"] == 200 and r["n_test"] == 120  # --max-jets, all test jets
        assert r["auc"] > 0.9  # three-prong toy jets against one-prong ones
        assert r["jets_per_s"] > 0 and r["train_time_s"] > r["fit_time_s"] > 0
        assert set(r["validation"]) >= {"auc", "rejection_at_0.5"}
    assert rows[0]["parameters"] == 694 + 1
    assert result["jetace"][1]["parameters"] > rows[0]["parameters"]
