"""ParticleNet(-Lite) and Particle Transformer from weaver-core, trained on a time budget.

The reference graph / transformer taggers, trained on exactly the jets of the jetace
benchmark split, on CPU, for a stated wall-time budget (the result states what the
budget reached: epochs, steps, jets seen).

Inputs per constituent (the ParticleNet top-tagging set, 7 features): Delta eta and
Delta phi to the jet axis, log pT, log E, log(pT / pT_jet), log(E / E_jet), Delta R;
points are (Delta eta, Delta phi); the 100 hardest constituents. Particle Transformer
additionally gets the constituent four-vectors for its pairwise features.

Models (weaver.nn.model):

* ``pnlite``: ParticleNet-Lite (k = 7, EdgeConv (32,32,32), (64,64,64), FC 128), ~26k
  parameters;
* ``pn``: ParticleNet (k = 16, (64,64,64), (128,128,128), (256,256,256), FC 256), ~366k;
* ``part``: Particle Transformer with weaver's default sizes (~2.1M).

Training: AdamW (lr 3e-3, weight decay 1e-4), batch 256, cross entropy, learning rate
decayed by a cosine of the elapsed fraction of the budget; the final weights are kept.

    python benchmarks/particlenet.py [--model pnlite] [--budget-minutes 20] [--max-jets N]

writes benchmarks/results/particlenet.json (or part.json / pn.json).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch
from common import (
    default_files,
    load_split,
    machine,
    metrics_row,
    padded,
    threads,
    throughput,
    write_json,
)
from tqdm import tqdm

__all__ = ["MODELS", "particle_inputs", "build_model", "TaggerNet", "train_and_evaluate", "main"]

MODELS = ("pnlite", "pn", "part")
MAX_PARTICLES = 100


def particle_inputs(p4: torch.Tensor, mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Network inputs from padded constituents.

    p4 (B, P, 4) as (E, px, py, pz) GeV, mask (B, P) bool. Returns points (B, 2, P),
    features (B, 7, P), mask (B, 1, P) float and vectors (B, 4, P) as (px, py, pz, E);
    padded entries are zero everywhere.
    """
    m = mask.to(p4.dtype)
    e, px, py, pz = p4.unbind(-1)
    jet = (p4 * m[..., None]).sum(1)
    jet_pt = torch.hypot(jet[:, 1], jet[:, 2]).clamp_min(1e-6)
    jet_eta = torch.asinh(jet[:, 3] / jet_pt)
    jet_phi = torch.atan2(jet[:, 2], jet[:, 1])
    pt = torch.hypot(px, py).clamp_min(1e-6)
    eta = torch.asinh(pz / pt)
    deta = eta - jet_eta[:, None]
    dphi = torch.remainder(torch.atan2(py, px) - jet_phi[:, None] + math.pi, 2 * math.pi) - math.pi
    logpt, loge = torch.log(pt), torch.log(e.clamp_min(1e-6))
    feats = torch.stack([deta, dphi, logpt, loge, logpt - torch.log(jet_pt)[:, None],
                         loge - torch.log(jet[:, 0].clamp_min(1e-6))[:, None],
                         torch.hypot(deta, dphi)], dim=1) * m[:, None]
    points = torch.stack([deta, dphi], dim=1) * m[:, None]
    vectors = torch.stack([px, py, pz, e], dim=1) * m[:, None]
    return points, feats, m[:, None], vectors


class TaggerNet(torch.nn.Module):
    """Padded constituents (p4, mask) -> signal logit (B,): inputs built inside."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.net = build_model(kind)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points, feats, m, vectors = particle_inputs(p4, mask)
        if self.kind == "part":
            out = self.net(feats, v=vectors, mask=m)
        else:
            out = self.net(points, feats, m)
        return out[:, 1] - out[:, 0]


def build_model(kind: str) -> torch.nn.Module:
    """A weaver-core network with two output classes."""
    if kind == "pnlite":
        from weaver.nn.model.ParticleNet import ParticleNet
        return ParticleNet(7, 2, conv_params=[(7, (32, 32, 32)), (7, (64, 64, 64))],
                           fc_params=[(128, 0.1)], use_fusion=False)
    if kind == "pn":
        from weaver.nn.model.ParticleNet import ParticleNet
        return ParticleNet(7, 2, conv_params=[(16, (64, 64, 64)), (16, (128, 128, 128)),
                                              (16, (256, 256, 256))],
                           fc_params=[(256, 0.1)], use_fusion=True)
    if kind == "part":
        from weaver.nn.model.ParticleTransformer import ParticleTransformer
        return ParticleTransformer(7, num_classes=2, pair_input_dim=4)
    raise ValueError(f"unknown model {kind!r}; choose one of {', '.join(MODELS)}")


NAMES = {"pnlite": "ParticleNet-Lite", "pn": "ParticleNet", "part": "Particle Transformer"}


def train_and_evaluate(p4_train: torch.Tensor, mask_train: torch.Tensor, y_train: np.ndarray,
                       p4_test: torch.Tensor, mask_test: torch.Tensor, y_test: np.ndarray,
                       kind: str = "pnlite", budget_minutes: float = 20.0, seed: int = 0,
                       batch_size: int = 256, lr: float = 3e-3, max_epochs: int = 1000,
                       throughput_threads: int = 1, keep_scores: bool = False
                       ) -> dict[str, Any]:
    """Train ``kind`` on the training jets for ``budget_minutes`` of wall time (at most
    ``max_epochs``), score the test jets, measure CPU inference throughput; returns a
    result row (see benchmarks/common.py), with ``keep_scores`` also the test scores
    (``scores``, a list of logits in test-jet order)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    p4_train, mask_train = p4_train[:, :MAX_PARTICLES].float(), mask_train[:, :MAX_PARTICLES]
    p4_test, mask_test = p4_test[:, :MAX_PARTICLES].float(), mask_test[:, :MAX_PARTICLES]
    model = TaggerNet(kind)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    y = torch.as_tensor(y_train, dtype=torch.float32)
    budget = 60.0 * budget_minutes
    t0 = time.perf_counter()
    steps = epochs = seen = 0
    losses = []
    bar = tqdm(total=int(budget), desc=f"{NAMES[kind]} ({budget_minutes:g} min budget)", unit="s")
    done = False
    while not done and epochs < max_epochs:
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        run = 0.0
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            frac = (time.perf_counter() - t0) / budget
            if frac >= 1.0:
                done = True
                break
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * frac))
            idx = perm[i:i + batch_size]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(p4_train[idx], mask_train[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            seen += len(idx)
            loss_value = loss.item()
            run += loss_value
            bar.n = min(int(time.perf_counter() - t0), int(budget))
            bar.set_postfix(epoch=epochs, loss=f"{loss_value:.3f}")
        else:
            epochs += 1
            losses.append(run / max(1, len(perm) // batch_size))
    bar.close()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(p4_test[i:i + 1024], mask_test[i:i + 1024])
                            for i in range(0, len(p4_test), 1024)])
    row = metrics_row(scores, y_test)
    if keep_scores:
        row["scores"] = scores.tolist()
    rate = throughput(model, p4_test, mask_test, batch=256, n_threads=throughput_threads,
                      max_jets=4096)
    row.update(model=NAMES[kind], features=f"{MAX_PARTICLES} constituents x 7",
               parameters=n_params, train_time_s=train_s, inference_jets_per_s=rate,
               inference={"device": "cpu", "threads": throughput_threads, "batch": 256,
                          "dtype": "float32", "includes": "input preparation from p4"},
               training={"budget_minutes": budget_minutes, "epochs_completed": epochs,
                         "steps": steps, "jets_seen": seen, "batch": batch_size, "lr": lr,
                         "threads": torch.get_num_threads(), "epoch_losses": losses,
                         "n_train": len(y)})
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    sig, bkg = default_files()
    ap = argparse.ArgumentParser(description="Train a weaver-core tagger on the benchmark split.")
    ap.add_argument("--model", choices=MODELS, default="pnlite")
    ap.add_argument("--budget-minutes", type=float, default=20.0)
    ap.add_argument("--max-jets", type=int, default=None, help="jets per class to read")
    ap.add_argument("--files-signal", nargs="+", default=sig)
    ap.add_argument("--files-background", nargs="+", default=bkg)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads for training")
    args = ap.parse_args(argv)
    split = load_split(args.files_signal, args.files_background, args.max_jets, seed=args.seed)
    p4_tr, m_tr = padded(split.train, MAX_PARTICLES)
    p4_te, m_te = padded(split.test, MAX_PARTICLES)
    with threads(args.threads or torch.get_num_threads()):
        row = train_and_evaluate(p4_tr, m_tr, split.y_train, p4_te, m_te, split.y_test,
                                 args.model, args.budget_minutes, args.seed)
    out = {"machine": machine(), "split": split.describe(), "row": row}
    name = {"pnlite": "particlenet", "pn": "particlenet_full", "part": "part"}[args.model]
    path = write_json(name, out)
    print(f"{row['model']}: AUC {row['auc']:.4f}, {row['training']['epochs_completed']} epochs, "
          f"{row['parameters']:,} parameters -> {path}")
    return out


if __name__ == "__main__":
    main()
