"""A small multilayer perceptron tagger on ACE features (torch, Adam, early stopping)."""

from __future__ import annotations

import copy
from typing import Any

import torch

from jetace.errors import InputError
from jetace.taggers.base import register
from jetace.taggers.preprocess import TRANSFORMS, FeatureScaler, SupervisedTagger

__all__ = ["MLPTagger", "MLPNet"]


class MLPNet(torch.nn.Module):
    """Raw features (B, F) -> scaler -> [Linear, SiLU, Dropout] x L -> logits.

    A linear skip connection from the scaled input to the output lets the network start
    from (and stay close to) the linear model, which is already strong on ACE features.
    Output: (B,) for two classes, (B, K) otherwise.
    """

    def __init__(self, scaler: FeatureScaler, hidden: tuple[int, ...], n_out: int,
                 dropout: float = 0.0, skip: bool = True):
        super().__init__()
        self.scaler = scaler
        f = scaler.mean.shape[0]
        dtype, device = scaler.mean.dtype, scaler.mean.device
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
        self.binary = n_out == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.scaler(x)
        out = self.body(z)
        if self.skip is not None:
            out = out + self.skip(z)
        return out[:, 0] if self.binary else out


@register("mlp")
class MLPTagger(SupervisedTagger):
    """Multilayer perceptron with input scaling, weight decay, dropout, Adam (AdamW)
    minibatches and early stopping on a validation split. Seedable; trains on the device
    of ``X`` (float32 unless ``X`` is float64).

    Parameters
    ----------
    hidden : widths of the 1-3 hidden layers.
    dropout, weight_decay : regularisation (decoupled weight decay, as AdamW).
    skip : add a linear skip connection from input to output.
    linear_start : with ``skip``, the inverse L2 strength C of a logistic regression
        (:class:`~jetace.taggers.linear.LinearTagger`) fitted first on all jets (the
        validation split included: a linear model on 40k jets hardly overfits, and every
        jet helps it); it sets the skip connection (then frozen) and the output bias, and
        the last layer starts at zero, so training starts from the linear model's
        predictions and the hidden layers learn a correction to it, early-stopped on the
        validation split. None: a random, trainable skip.
    transform : input scaling, "standard" or "signed_log".
    lr, batch_size, max_epochs : optimisation.
    patience : stop after this many epochs without a better validation loss; the
        weights of the best epoch are kept.
    val_fraction : fraction of the jets held out for early stopping.
    seed : seeds the split, the initialisation, dropout and the minibatch order.
    verbose : print the validation loss per epoch.

    Learned attributes: ``classes_``, ``n_features_in_``, ``net_`` (:class:`MLPNet`),
    ``n_epochs_``, ``best_epoch_``, ``best_val_loss_``, ``history_`` (list of
    (train loss, validation loss) per epoch).
    """

    def __init__(self, hidden: tuple[int, ...] = (64,), dropout: float = 0.2,
                 weight_decay: float = 1e-2, skip: bool = True,
                 linear_start: float | None = 3.0, transform: str = "standard",
                 lr: float = 1e-3, batch_size: int = 512, max_epochs: int = 200,
                 patience: int = 10, val_fraction: float = 0.2, seed: int = 0,
                 verbose: bool = False):
        hidden = tuple(int(h) for h in hidden)
        if not 1 <= len(hidden) <= 3 or min(hidden) < 1:
            raise InputError(f"hidden must list 1 to 3 positive layer widths, got {hidden}")
        if transform not in TRANSFORMS:
            raise InputError(f"unknown transform {transform!r}; "
                             f"choose one of {', '.join(TRANSFORMS)}")
        if not 0.0 < val_fraction < 1.0:
            raise InputError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if linear_start is not None and not linear_start > 0:
            raise InputError(f"linear_start must be a positive C or None, got {linear_start!r}")
        self.hidden, self.dropout, self.skip = hidden, dropout, skip
        self.linear_start = linear_start
        self.weight_decay = weight_decay
        self.transform, self.lr, self.batch_size = transform, lr, batch_size
        self.max_epochs, self.patience, self.val_fraction = max_epochs, patience, val_fraction
        self.seed, self.verbose = seed, verbose

    def get_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("hidden", "dropout", "weight_decay", "skip",
                                               "linear_start", "transform", "lr", "batch_size",
                                               "max_epochs", "patience", "val_fraction", "seed",
                                               "verbose")}

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if out.ndim == 1:
            return torch.nn.functional.binary_cross_entropy_with_logits(out, y.to(out.dtype))
        return torch.nn.functional.cross_entropy(out, y)

    def _fit(self, X: torch.Tensor, y: torch.Tensor, **kwargs) -> None:
        dtype = X.dtype if X.dtype == torch.float64 else torch.float32
        device = X.device
        g = torch.Generator().manual_seed(self.seed)
        perm = torch.randperm(X.shape[0], generator=g).to(device)
        n_val = max(1, int(round(self.val_fraction * X.shape[0])))
        va, tr = perm[:n_val], perm[n_val:]
        if len(tr) == 0:
            raise InputError(f"too few jets ({X.shape[0]}) for a validation split")
        scaler = FeatureScaler(X.shape[1], self.transform, dtype=dtype).to(device).fit(X[tr])
        k = len(self.classes_)
        torch.manual_seed(self.seed)  # initialisation and dropout (CPU and current device)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(self.seed)
        net = MLPNet(scaler, self.hidden, 1 if k == 2 else k, self.dropout, self.skip)
        if self.skip and self.linear_start is not None:
            self._linear_start(net, X, y, k)
        params = [p for p in net.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim == 2]
        no_decay = [p for p in params if p.ndim != 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=self.lr)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.3,
                                                           patience=max(1, self.patience // 3))
        Xtr, ytr, Xva, yva = X[tr], y[tr], X[va], y[va]
        best, best_state, best_epoch, history = float("inf"), None, 0, []
        for epoch in range(self.max_epochs):
            net.train()
            order = torch.randperm(len(tr), generator=g).to(device)
            total = 0.0
            for i in range(0, len(tr), self.batch_size):
                idx = order[i:i + self.batch_size]
                opt.zero_grad(set_to_none=True)
                loss = self._loss(net(Xtr[idx]), ytr[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            net.eval()
            with torch.no_grad():
                val = float(sum(self._loss(net(Xva[i:i + 8192]), yva[i:i + 8192])
                                * len(yva[i:i + 8192]) for i in range(0, len(va), 8192)) / len(va))
            history.append((total / len(tr), val))
            sched.step(val)
            if self.verbose:
                print(f"epoch {epoch + 1}: train loss {total / len(tr):.5f}, val loss {val:.5f}")
            if val < best - 1e-6:
                best, best_epoch, best_state = val, epoch + 1, copy.deepcopy(net.state_dict())
            elif epoch + 1 - best_epoch >= self.patience:
                break
        net.load_state_dict(best_state)
        self.net_ = net.eval()
        self.n_epochs_, self.best_epoch_, self.best_val_loss_ = len(history), best_epoch, best
        self.history_ = history

    def _linear_start(self, net: MLPNet, X: torch.Tensor, y: torch.Tensor, k: int) -> None:
        """Skip connection and output bias from a logistic fit on the scaled inputs."""
        from jetace.taggers.linear import LinearTagger

        lin = LinearTagger(C=self.linear_start)
        lin.classes_ = self.classes_
        with torch.no_grad():
            Z = net.scaler(X)
        w, _ = lin._lbfgs(Z, y, k, float(self.linear_start), None)
        with torch.no_grad():
            net.skip.weight.copy_(w[:, :-1])
            last = net.body[-1]
            last.weight.zero_()
            last.bias.copy_(w[:, -1])
        net.skip.weight.requires_grad_(False)

    def as_module(self) -> MLPNet:
        """The fitted network: raw features (B, F) -> logits (B,) or (B, K)."""
        self._check_fitted()
        return self.net_

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        params = self.get_params()
        params["hidden"] = list(params["hidden"])
        return {
            "params": params,
            "classes": list(self.classes_),
            "n_features_in": self.n_features_in_,
            "scaler": self.net_.scaler.get_state(),
            "weights": {k: v.detach().cpu() for k, v in self.net_.state_dict().items()
                        if not k.startswith("scaler.")},
            "n_epochs": self.n_epochs_,
            "best_epoch": self.best_epoch_,
            "best_val_loss": self.best_val_loss_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> MLPTagger:
        out = cls(**state["params"])
        out.classes_ = list(state["classes"])
        out.n_features_in_ = int(state["n_features_in"])
        scaler = FeatureScaler.from_state(state["scaler"])
        k = len(out.classes_)
        net = MLPNet(scaler, out.hidden, 1 if k == 2 else k, out.dropout, out.skip)
        net.load_state_dict({**{f"scaler.{k}": v for k, v in scaler.state_dict().items()},
                             **{k: torch.as_tensor(v) for k, v in state["weights"].items()}})
        out.net_ = net.eval()
        out.n_epochs_, out.best_epoch_ = int(state["n_epochs"]), int(state["best_epoch"])
        out.best_val_loss_ = float(state["best_val_loss"])
        out.history_ = []
        out._module = None
        return out
