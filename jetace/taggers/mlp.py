"""A small multilayer perceptron tagger on ACE features (torch, Adam, early stopping)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError
from jetace.numerics import fit_logistic, weighted_log_loss
from jetace.taggers.base import register, renamed_params
from jetace.taggers.preprocess import TRANSFORMS, FeatureScaler, SupervisedTagger, check_choice

__all__ = ["MLPTagger", "MLPNet", "MLPBody", "SCHEDULES", "DEFAULT_MAX_PARAMETERS",
           "ENSEMBLE"]

SCHEDULES = ("cosine", "plateau")
#: trainable-parameter budget of the default network (``hidden=None``)
DEFAULT_MAX_PARAMETERS = 10_000
#: the earlier, larger default: three (128, 64) networks blended with 25% of a logistic
#: regression (292,538 trainable parameters on the 694 default features)
ENSEMBLE = {"hidden": (128, 64), "n_models": 3, "dropout": 0.3, "linear_blend": 0.25,
            "lr": 1e-3}


class MLPBody(torch.nn.Module):
    """Scaled features (B, F) -> [Linear, SiLU, Dropout] x L -> logits (B, n_out),
    plus an optional linear skip connection from input to output."""

    def __init__(self, f: int, hidden: tuple[int, ...], n_out: int, dropout: float,
                 skip: bool, dtype: torch.dtype, device: torch.device):
        super().__init__()
        layers: list[torch.nn.Module] = []
        width = f
        for h in hidden:
            layers += [torch.nn.Linear(width, h, dtype=dtype, device=device), torch.nn.SiLU(),
                       torch.nn.Dropout(dropout)]
            width = h
        layers.append(torch.nn.Linear(width, n_out, dtype=dtype, device=device))
        self.body = torch.nn.Sequential(*layers)
        self.skip = (torch.nn.Linear(f, n_out, bias=False, dtype=dtype, device=device)
                     if skip else None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.body(z)
        return out + self.skip(z) if self.skip is not None else out


class MLPNet(torch.nn.Module):
    """Raw features (B, F) -> scaler -> mean of ``n_models`` member networks' logits,
    optionally blended with a linear model's logits.

    Each member is ``[Linear, SiLU, Dropout] x L -> Linear`` (:class:`MLPBody`), with an
    optional linear skip connection from the scaled input to the output that lets a
    member start from (and stay close to) the linear model. All members share the scaler.
    With ``linear_blend`` w > 0 the output is ``(1 - w) * mean member logits + w * linear``,
    ``linear`` an affine map of the scaled features (a logistic regression's logits).
    Output: (B,) for two classes, (B, K) otherwise.
    """

    def __init__(self, scaler: FeatureScaler, hidden: tuple[int, ...], n_out: int,
                 dropout: float = 0.0, skip: bool = True, n_models: int = 1,
                 linear_blend: float = 0.0):
        super().__init__()
        self.scaler = scaler
        f = scaler.mean.shape[0]
        dtype, device = scaler.mean.dtype, scaler.mean.device
        self.members = torch.nn.ModuleList(
            MLPBody(f, hidden, n_out, dropout, skip, dtype, device) for _ in range(n_models))
        self.binary = n_out == 1
        self.linear_blend = float(linear_blend)
        self.linear = (torch.nn.Linear(f, n_out, dtype=dtype, device=device)
                       if self.linear_blend > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scaler(x)
        out = self.members[0](z)
        for m in self.members[1:]:
            out = out + m(z)
        if len(self.members) > 1:
            out = out / len(self.members)
        if self.linear is not None:
            out = (1.0 - self.linear_blend) * out + self.linear_blend * self.linear(z)
        return out[:, 0] if self.binary else out


@register("mlp")
class MLPTagger(SupervisedTagger):
    """Multilayer perceptron (an average of ``n_models`` seeded networks) with input
    scaling, weight decay, dropout, Adam (AdamW) minibatches, a learning-rate schedule
    and early stopping on a validation split. Seedable; trains on the device of ``X``
    (float32 unless ``X`` is float64).

    The default is a small network within a budget of ``max_parameters`` = 10,000
    trainable parameters (everything :func:`jetace.cost.trainable_parameters` counts,
    the blended logistic model included): one hidden layer as wide as the budget allows
    (13 units on the 694 default BIP(4,7) mirror features, 9,744 parameters), dropout
    0.3, one-cycle cosine schedule to lr 3e-3 over 60 epochs, output blended with 25% of
    a logistic regression's logit. Chosen on a validation split of 50k top and QCD
    jets (benchmarks/efficiency.py: the blend, the higher learning rate and one network
    rather than several at the same budget each helped). The earlier default, three
    (128, 64) networks (292,538 parameters on 694 features), is ``MLPTagger(**ENSEMBLE)``.

    Parameters
    ----------
    hidden : widths of the 1-3 hidden layers; None (default): one layer, the widest (at
        least one unit) within ``max_parameters``.
    max_parameters : with ``hidden=None``, the trainable-parameter budget of the whole
        network (all members, skip connections and the blended linear model).
    dropout, weight_decay : regularisation (decoupled weight decay, as AdamW).
    skip : add a linear skip connection from input to output.
    linear_start : with ``skip``, the inverse L2 strength C of a logistic regression
        (:class:`~jetace.taggers.linear.LinearTagger`) fitted first on all jets (a
        linear model on 40k jets hardly overfits, and every jet helps it); it sets the
        skip connection (then frozen) and the output bias, and the last layer starts at
        zero, so training starts from the linear model's predictions and the hidden
        layers learn a correction to it. None: a random, trainable skip.
    linear_blend : weight w in [0, 1) of a logistic regression's logit in the output,
        ``(1 - w) * networks + w * logistic``; the logistic model (inverse L2 strength
        ``linear_C``, as :class:`~jetace.taggers.linear.LinearTagger`) is fitted on all
        jets on the same scaled inputs. 0 disables it.
    linear_C : the inverse L2 strength C of that logistic model.
    scaling : input scaling, "standard" or "signed_log" (fitted on all jets, shared
        by the networks).
    lr, batch_size, max_epochs : optimisation.
    schedule : "cosine": one-cycle learning rate (10% warm-up to ``lr``, then cosine
        decay to ~0 at ``max_epochs``); "plateau": ``lr`` cut by 0.3 when the validation
        loss stalls for ``patience // 3`` epochs.
    patience : stop after this many epochs without a better validation loss; the
        weights of the best epoch are kept.
    val_fraction : fraction of the jets held out for early stopping (a different
        seeded split for each network, so together they learn from every jet).
    n_models : number of networks whose logits are averaged.
    seed : seeds the splits, the initialisations, dropout and the minibatch order
        (network ``i`` uses ``seed + i``).
    verbose : print the validation loss per epoch.

    Learned attributes: ``classes_``, ``n_features_in_``, ``net_`` (:class:`MLPNet`),
    ``n_epochs_``, ``best_epoch_``, ``best_val_loss_``, ``history_`` (list of
    (train loss, validation loss) per epoch) of the first network, and ``members_``
    (one dict with keys n_epochs, best_epoch, best_val_loss per network).
    """

    fitted_attribute = "net_"

    def __init__(self, hidden: tuple[int, ...] | None = None,
                 max_parameters: int = DEFAULT_MAX_PARAMETERS, dropout: float = 0.3,
                 weight_decay: float = 1e-2, skip: bool = False,
                 linear_start: float | None = None, linear_blend: float = 0.25,
                 linear_C: float = 10.0, scaling: str = "standard",
                 lr: float = 3e-3, batch_size: int = 512, max_epochs: int = 60,
                 schedule: str = "cosine", patience: int = 20, val_fraction: float = 0.2,
                 n_models: int = 1, seed: int = 0, verbose: bool = False):
        self.hidden, self.max_parameters = hidden, max_parameters
        self.dropout, self.skip = dropout, skip
        self.linear_start = linear_start
        self.linear_blend, self.linear_C = linear_blend, linear_C
        self.weight_decay = weight_decay
        self.scaling, self.lr, self.batch_size = scaling, lr, batch_size
        self.max_epochs, self.schedule = max_epochs, schedule
        self.patience, self.val_fraction = patience, val_fraction
        self.n_models, self.seed, self.verbose = n_models, seed, verbose

    def _check_params(self) -> None:
        if self.hidden is None:
            if int(self.max_parameters) < 1:
                raise InputError(f"max_parameters must be a positive number of trainable "
                                 f"parameters, got {self.max_parameters!r}")
        else:
            hidden = tuple(int(h) for h in self.hidden)
            if not 1 <= len(hidden) <= 3 or min(hidden) < 1:
                raise InputError(f"hidden must list 1 to 3 positive layer widths, got "
                                 f"{hidden}")
        check_choice("scaling", self.scaling, TRANSFORMS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if not 0.0 < self.val_fraction < 1.0:
            raise InputError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.linear_start is not None and not self.linear_start > 0:
            raise InputError(f"linear_start must be a positive C or None, got "
                             f"{self.linear_start!r}")
        if int(self.n_models) < 1:
            raise InputError(f"n_models must be at least 1, got {self.n_models}")
        if not 0.0 <= float(self.linear_blend) < 1.0:
            raise InputError(f"linear_blend must lie in [0, 1), got {self.linear_blend!r}")
        if not float(self.linear_C) > 0:
            raise InputError(f"linear_C must be positive, got {self.linear_C!r}")

    @property
    def _hidden(self) -> tuple[int, ...]:
        """The hidden widths: as given, or once fitted those chosen for the budget."""
        if self.hidden is None:
            return tuple(self.hidden_)
        return tuple(int(h) for h in self.hidden)

    def _budget_widths(self, f: int, n_out: int) -> tuple[int, ...]:
        """``hidden=None``: one hidden layer, the widest (at least 1) whose network, all
        members, skip connections and the blended linear model included, has at most
        ``max_parameters`` parameters (counted as :func:`jetace.cost.trainable_parameters`)."""
        m = int(self.n_models)
        fixed = m * (n_out + (f * n_out if self.skip else 0))
        if float(self.linear_blend) > 0:
            fixed += f * n_out + n_out
        per_unit = m * (f + 1 + n_out)
        return (max(1, (int(self.max_parameters) - fixed) // per_unit),)

    def _fit(self, X: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None
             ) -> None:
        dtype = X.dtype if X.dtype == torch.float64 else torch.float32
        device = X.device
        sw = sample_weight
        n_val = max(1, int(round(self.val_fraction * X.shape[0])))
        if X.shape[0] - n_val < 1:
            raise InputError(f"too few jets ({X.shape[0]}) for a validation split: "
                             f"n_samples = {X.shape[0]}")
        scaler = FeatureScaler(X.shape[1], self.scaling, dtype=dtype).to(device).fit(
            X, sample_weight=sw)
        k = len(self.classes_)
        self.hidden_ = (self._budget_widths(X.shape[1], 1 if k == 2 else k)
                        if self.hidden is None else tuple(int(h) for h in self.hidden))
        hidden = self.hidden_
        net = MLPNet(scaler, hidden, 1 if k == 2 else k, self.dropout, self.skip,
                     int(self.n_models), float(self.linear_blend))
        start = None
        if self.skip and self.linear_start is not None:
            start = self._linear_start(scaler, X, y, k, self.linear_start, sw)
        if net.linear is not None:
            w = self._linear_start(scaler, X, y, k, float(self.linear_C), sw)
            with torch.no_grad():
                net.linear.weight.copy_(w[:, :-1])
                net.linear.bias.copy_(w[:, -1])
            net.linear.requires_grad_(False)
        self.members_, first = [], None
        for i, member in enumerate(net.members):
            seed = self.seed + i
            torch.manual_seed(seed)  # initialisation and dropout (CPU and current device)
            if device.type == "cuda":
                torch.cuda.manual_seed_all(seed)
            net.members[i] = member = MLPBody(scaler.mean.shape[0], hidden,
                                              1 if k == 2 else k, self.dropout, self.skip,
                                              dtype, device)
            if start is not None:
                with torch.no_grad():
                    member.skip.weight.copy_(start[:, :-1])
                    member.body[-1].weight.zero_()
                    member.body[-1].bias.copy_(start[:, -1])
                member.skip.weight.requires_grad_(False)
            stats, history = self._fit_member(member, scaler, X, y, sw, n_val, seed, i)
            self.members_.append(stats)
            if first is None:
                first = stats, history
        self.net_ = net.eval()
        stats, self.history_ = first
        self.n_epochs_, self.best_epoch_ = stats["n_epochs"], stats["best_epoch"]
        self.best_val_loss_ = stats["best_val_loss"]

    def _fit_member(self, member: MLPBody, scaler: FeatureScaler, X: torch.Tensor,
                    y: torch.Tensor, sw: torch.Tensor | None, n_val: int, seed: int,
                    index: int) -> tuple[dict[str, Any], list[tuple[float, float]]]:
        """Train one network on its own seeded split; keeps its best-epoch weights.
        With weights ``sw``, every minibatch loss and the validation loss are weighted
        means (the loss reported per epoch too)."""
        device = X.device
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(X.shape[0], generator=g).to(device)
        va, tr = perm[:n_val], perm[n_val:]
        params = [p for p in member.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim == 2]
        no_decay = [p for p in params if p.ndim != 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)
        n_batches = -(-len(tr) // self.batch_size)
        if self.schedule == "cosine":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=self.lr, total_steps=max(2, self.max_epochs * n_batches),
                pct_start=0.1)
        else:
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, factor=0.3, patience=max(1, self.patience // 3))
        with torch.no_grad():
            Ztr, Zva = scaler(X[tr]), scaler(X[va])
        ytr, yva = y[tr], y[va]
        wtr = None if sw is None else sw[tr].to(Ztr.dtype)
        wva = None if sw is None else sw[va].to(Ztr.dtype)
        if wva is not None and not float(wva.sum()) > 0:
            raise InputError("the validation jets of the early stopping all have weight 0; "
                             "use another seed or val_fraction")
        best, best_state, best_epoch, history = float("inf"), None, 0, []
        for epoch in range(self.max_epochs):
            member.train()
            order = torch.randperm(len(tr), generator=g).to(device)
            total, seen = 0.0, 0.0
            for i in range(0, len(tr), self.batch_size):
                idx = order[i:i + self.batch_size]
                bw = None if wtr is None else wtr[idx]
                if bw is not None and not float(bw.sum()) > 0:
                    continue  # a minibatch of zero-weight jets carries no gradient
                opt.zero_grad(set_to_none=True)
                loss = weighted_log_loss(self._squeeze(member(Ztr[idx])), ytr[idx], bw)
                loss.backward()
                opt.step()
                if self.schedule == "cosine":
                    sched.step()
                share = len(idx) if bw is None else float(bw.sum())
                total, seen = total + float(loss.detach()) * share, seen + share
            member.eval()
            with torch.no_grad():
                val, val_seen = 0.0, 0.0
                for i in range(0, len(va), 8192):
                    bw = None if wva is None else wva[i:i + 8192]
                    share = len(yva[i:i + 8192]) if bw is None else float(bw.sum())
                    if share > 0:
                        val += float(weighted_log_loss(self._squeeze(member(Zva[i:i + 8192])),
                                                       yva[i:i + 8192], bw)) * share
                        val_seen += share
                val /= val_seen
            history.append((total / max(seen, 1e-300), val))
            if self.schedule != "cosine":
                sched.step(val)
            if self.verbose:
                print(f"network {index + 1}, epoch {epoch + 1}: "
                      f"train loss {history[-1][0]:.5f}, val loss {val:.5f}")
            if val < best - 1e-6:
                best, best_epoch, best_state = val, epoch + 1, copy.deepcopy(member.state_dict())
            elif epoch + 1 - best_epoch >= self.patience:
                break
        member.load_state_dict(best_state)
        member.eval()
        return {"n_epochs": len(history), "best_epoch": best_epoch, "best_val_loss": best}, history

    @staticmethod
    def _squeeze(out: torch.Tensor) -> torch.Tensor:
        return out[:, 0] if out.shape[1] == 1 else out

    def _linear_start(self, scaler: FeatureScaler, X: torch.Tensor, y: torch.Tensor,
                      k: int, C: float, sw: torch.Tensor | None = None) -> torch.Tensor:
        """Logistic weights (n_out, F + 1) on the scaled inputs, bias last."""
        with torch.no_grad():
            Z = scaler(X)
        w, _ = fit_logistic(Z, y, k, float(C), None, sample_weight=sw)
        return w.detach()

    def as_module(self) -> MLPNet:
        """The fitted network: raw features (B, F) -> logits (B,) or (B, K)."""
        self._check_fitted()
        return self.net_

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        params = self.get_params()
        params["hidden"] = list(self._hidden)
        return {
            "params": params,
            "classes": np.asarray(self.classes_).tolist(),
            "n_features_in": self.n_features_in_,
            "scaler": self.net_.scaler.get_state(),
            "weights": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()
                        if not k.startswith("scaler.")},
            "n_epochs": self.n_epochs_,
            "best_epoch": self.best_epoch_,
            "best_val_loss": self.best_val_loss_,
            "members": [dict(m) for m in self.members_],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MLPTagger:
        # files written before ensembles: one network, weights "body.*"/"skip.*", and
        # the defaults of that time for parameters they did not store
        legacy = not any(k.startswith("members.") for k in state["weights"])
        # files written before the linear blend have none
        params = {"n_models": 1, "schedule": "plateau", "linear_blend": 0.0,
                  **renamed_params(state["params"])}
        out = cls(**params)
        out.classes_ = np.asarray(state["classes"])
        out.n_features_in_ = int(state["n_features_in"])
        scaler = FeatureScaler.from_state(state["scaler"])
        k = len(out.classes_)
        out.hidden_ = out._hidden
        net = MLPNet(scaler, out.hidden_, 1 if k == 2 else k, out.dropout, out.skip,
                     int(out.n_models), float(out.linear_blend))
        weights = {("members.0." + k if legacy else k): torch.as_tensor(v)
                   for k, v in state["weights"].items()}
        net.load_state_dict({**{f"scaler.{k}": v for k, v in scaler.state_dict().items()},
                             **weights})
        out.net_ = net.eval()
        out.n_epochs_, out.best_epoch_ = int(state["n_epochs"]), int(state["best_epoch"])
        out.best_val_loss_ = float(state["best_val_loss"])
        out.members_ = [dict(m) for m in state.get("members", [])] or [
            {"n_epochs": out.n_epochs_, "best_epoch": out.best_epoch_,
             "best_val_loss": out.best_val_loss_}]
        out.history_ = []
        out._module = {}
        return out
