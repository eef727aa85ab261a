"""Training pipeline: ROOT files -> feature matrix -> fitted tagger -> :class:`JetaceModel`.

Used by ``jetace train`` and ``jetace demo``; usable on its own::

    from jetace.training import train_model
    model, report = train_model(signal=["top.root"], background=["qcd.root"], model="linear")
    model.save("top.model")
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError
from jetace.model_file import JetaceModel
from jetace.taggers.base import Tagger
from jetace.taggers.preprocess import to_numpy

__all__ = ["train_model", "collect_features", "make_tagger", "split_indices"]


def _stem(label: str) -> str:
    return label[len("label_"):] if label.startswith("label_") else label


def collect_features(sets, spec, *, labels: list[str] | None = None, tree: str = "tree",
                     schema="jetclass", step_size="100 MB", max_jets: int | None = None,
                     device: str | torch.device = "auto", batch_size: int = 4096,
                     dtype: torch.dtype = torch.float32, progress: bool = True,
                     ) -> tuple[torch.Tensor, np.ndarray]:
    """Stream input files into a feature matrix and class indices.

    ``sets``: a list of ``(name, paths, class_index)``; with ``labels`` (label branch
    names) the class of every jet is instead the index of its true label branch among
    ``labels`` (jets with none of them are dropped; the class index of the set is then
    ignored). ``max_jets`` applies per set. Returns X (n, F) on ``device`` in ``dtype``
    and y (n,) int64. Only the feature matrix stays in memory.
    """
    from jetace.extract import iter_features, jet_columns

    xs, ys = [], []
    for name, paths, index in sets:
        n_set, n_unlabelled = 0, 0
        for chunk, feats in iter_features(paths, spec, tree=tree, schema=schema,
                                          step_size=step_size, max_jets=max_jets,
                                          device=device, batch_size=batch_size, dtype=dtype,
                                          progress=progress, desc=f"features ({name})"):
            n_set += len(chunk)
            if labels is None:
                xs.append(feats)
                ys.append(np.full(len(chunk), index, dtype=np.int64))
                continue
            cols = jet_columns(chunk)
            missing = [lab for lab in labels if lab not in cols]
            if missing:
                have = sorted(c for c in cols if c.startswith("label_"))
                raise InputError(f"label branch(es) {missing} not found in {name} files "
                                 f"{paths}; label branches there: {have or 'none'}")
            onehot = np.stack([np.asarray(cols[lab]).astype(bool) for lab in labels], axis=1)
            keep = onehot.any(axis=1)
            n_unlabelled += int((~keep).sum())
            xs.append(feats[torch.as_tensor(keep, device=feats.device)])
            ys.append(onehot[keep].argmax(axis=1).astype(np.int64))
        if n_set == 0:
            raise InputError(f"no jets in the {name} files {paths}")
        if labels is not None and n_unlabelled:
            print(f"{name}: {n_unlabelled} of {n_set} jets have none of the labels "
                  f"{', '.join(labels)}; they are left out")
    X = torch.cat(xs) if xs else torch.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    if len(y) == 0:
        raise InputError("no labelled jets to train on")
    present = np.unique(y)
    if labels is not None and len(present) < len(labels):
        absent = [labels[i] for i in range(len(labels)) if i not in present]
        raise InputError(f"no jets with label(s) {absent} in the inputs; every class needs jets")
    return X, y


def make_tagger(model: str, **params) -> Tagger:
    """A fresh tagger of registered kind ``model`` (e.g. "linear", "mlp")."""
    from jetace.taggers.base import TAGGERS

    if model not in TAGGERS:
        import importlib

        try:
            importlib.import_module(f"jetace.taggers.{model}")
        except ModuleNotFoundError:
            pass
    if model not in TAGGERS:
        raise InputError(f"unknown model {model!r}; choose one of {', '.join(sorted(TAGGERS))}")
    return TAGGERS[model](**params)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random (train, validation) index arrays; validation may be empty."""
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"validation fraction must lie in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def train_model(*, signal=None, background=None, inputs=None, labels: list[str] | None = None,
                spec: dict[str, Any] | None = None, model: str = "linear",
                tagger_params: dict[str, Any] | None = None, val_fraction: float = 0.2,
                seed: int = 0, tree: str = "tree", schema="jetclass", step_size="100 MB",
                max_jets: int | None = None, device: str | torch.device = "auto",
                batch_size: int = 4096, progress: bool = True,
                ) -> tuple[JetaceModel, dict[str, Any]]:
    """Train a supervised model on ROOT files; returns (model, report).

    Binary: ``signal`` and ``background`` paths. Multi-class: ``inputs`` paths and
    ``labels`` (label branch names, two or more; one class each). The features follow
    ``spec`` (default: bip order 4, degree 7). A seeded ``val_fraction`` of the jets is
    held out; the report holds training time, jet counts and validation metrics
    (binary: :func:`jetace.metrics.binary_metrics`; multi-class: accuracy).
    """
    from jetace.extract import resolve_device
    from jetace.features import features_from_spec
    from jetace.io import expand_paths
    from jetace.metrics import binary_metrics

    spec = dict(spec or {"family": "bip", "max_particles": 128})
    features = features_from_spec(spec)
    max_particles = int(spec.get("max_particles", 128))
    if labels is not None:
        labels = [lab.strip() for lab in labels if lab.strip()]
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise InputError(f"--labels needs two or more distinct label branches, got {labels}")
        if inputs is None or signal is not None or background is not None:
            raise InputError("multi-class training takes --inputs and --labels "
                             "(not --signal/--background)")
        sets, classes = [("input", inputs, 0)], labels
    else:
        if signal is None or background is None:
            raise InputError("binary training needs both signal and background files")
        same = ({os.path.realpath(p) for p in expand_paths(signal)}
                & {os.path.realpath(p) for p in expand_paths(background)})
        if same:
            raise InputError(f"the same file(s) given as signal and as background: "
                             f"{', '.join(sorted(same))}")
        sets, classes = [("background", background, 0), ("signal", signal, 1)], \
            ["background", "signal"]
    dev = resolve_device(device)
    X, y = collect_features(sets, {**features.spec, "max_particles": max_particles},
                            labels=labels, tree=tree, schema=schema, step_size=step_size,
                            max_jets=max_jets, device=dev, batch_size=batch_size,
                            progress=progress)
    tr, va = split_indices(len(y), val_fraction, seed)
    tagger = make_tagger(model, **(tagger_params or {}))
    t0 = time.perf_counter()
    tr_t = torch.as_tensor(tr, device=X.device)
    tagger.fit(X[tr_t], y[tr])
    if X.device.type == "cuda":
        torch.cuda.synchronize(X.device)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"training_seconds": seconds, "n_train": len(tr), "n_val": len(va),
                              "n_jets_per_class": {c: int((y == i).sum())
                                                   for i, c in enumerate(classes)},
                              "device": str(X.device), "model": model}
    fitted_classes = [classes[int(i)] for i in getattr(tagger, "classes_", range(len(classes)))]
    result = JetaceModel(features, tagger, fitted_classes, max_particles=max_particles,
                         feature_dtype=X.dtype)
    if len(va):
        scores = to_numpy(tagger.decision_function(X[torch.as_tensor(va, device=X.device)]))
        if len(classes) == 2 and np.unique(y[va]).size == 2:
            report["validation"] = binary_metrics(scores, y[va])
        elif scores.ndim == 2:
            report["validation"] = {"accuracy": float(np.mean(scores.argmax(1) == y[va]))}
    result.metadata.update({
        "training_seconds": round(seconds, 3), "n_train": len(tr), "n_val": len(va),
        "seed": seed, "val_fraction": val_fraction, "model": model,
        "validation": report.get("validation", {}),
        "inputs": {name: [os.path.basename(p) for p in expand_paths(paths)]
                   for name, paths, _ in sets},
    })
    return result, report
