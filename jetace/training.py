"""Training pipeline: ROOT files -> feature matrix -> fitted tagger -> :class:`JetaceModel`.

Used by ``jetace train`` and ``jetace demo``; usable on its own::

    from jetace.training import train_model
    model, report = train_model(signal=["top.root"], background=["qcd.root"], model="linear")
    model.save("top.model")

:func:`train_unsupervised` (anomaly scores on background only, or clustering) and
:func:`train_cwola` (two mixed samples) share the same pipeline and give model files
that score larger = more signal-like. The defaults of each mode (feature spec,
validation fraction, tagger parameters) are :mod:`jetace.presets`.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from typing import Any

import numpy as np
import torch
from sklearn.base import clone

from jetace import presets
from jetace.errors import InputError
from jetace.model_file import JetaceModel
from jetace.numerics import split_indices, to_numpy
from jetace.run.options import ReadOptions, RunOptions, resolve_device, resolve_options
from jetace.taggers.base import Tagger

__all__ = ["train_model", "train_unsupervised", "train_cwola", "collect_features",
           "make_tagger", "split_indices", "training_summary"]


def _stem(label: str) -> str:
    return label[len("label_"):] if label.startswith("label_") else label


def collect_features(sets, spec, read: ReadOptions | None = None,
                     run: RunOptions | None = None, *, labels: list[str] | None = None,
                     weights: bool = False, bad_jets: list[tuple[str, int, str]] | None = None,
                     **options: Any,
                     ) -> tuple[torch.Tensor, np.ndarray] | tuple[torch.Tensor, np.ndarray,
                                                                  np.ndarray]:
    """Stream input files into a feature matrix and class indices.

    ``sets``: a list of ``(name, paths, class_index)``; with ``labels`` (label branch
    names) the class of every jet is instead the index of its true label branch among
    ``labels`` (jets with none of them are dropped; the class index of the set is then
    ignored). ``read``, ``run``: :class:`~jetace.run.options.ReadOptions` and
    ``RunOptions`` (their field names also as keywords): ``max_jets`` applies per set,
    ``skip_bad`` skips unreadable files with a warning and ``workers`` > 1 computes in
    that many CPU processes (see :func:`jetace.run.features.iter_features`); ``bad_jets``:
    a list to leave jets with bad
    momenta or non-finite features out (listed there) instead of stopping
    (:func:`jetace.run.features.iter_features`). Returns X (n, F) on the run's device in its dtype
    and y (n,) int64, and with ``weights`` the per-jet weights w (n,) float64 of the
    schema's weight branch (:attr:`jetace.schema.Schema.weight`, which must be set).
    Only the feature matrix stays in memory.
    """
    from jetace.outputs import jet_columns
    from jetace.run.features import iter_features
    from jetace.schema import resolve_schema

    read, run = resolve_options(read, run, **options)
    if weights and resolve_schema(read.schema).weight is None:
        raise InputError("weights were asked for, but the schema names no weight branch "
                         "(--weight-branch NAME or the schema's 'weight')")
    xs, ys, ws = [], [], []
    for name, paths, index in sets:
        n_set, n_unlabelled = 0, 0
        for chunk, feats in iter_features(paths, spec, read, run, desc=f"features ({name})",
                                          bad_jets=bad_jets):
            n_set += len(chunk)
            w = np.asarray(chunk["weight"], dtype=np.float64) if weights else None
            if labels is None:
                xs.append(feats)
                ys.append(np.full(len(chunk), index, dtype=np.int64))
                ws.append(w)
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
            ws.append(None if w is None else w[keep])
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
    return (X, y, np.concatenate(ws)) if weights else (X, y)


def make_tagger(model: str, **params) -> Tagger:
    """A fresh tagger of registered kind ``model`` (e.g. "linear", "mlp")."""
    from jetace.taggers.base import TAGGERS

    if model not in TAGGERS:  # import the defining module (anomaly.py defines several)
        import importlib

        for module in (model, "anomaly", "cluster", "weak"):
            try:
                importlib.import_module(f"jetace.taggers.{module}")
            except ModuleNotFoundError:
                continue
            if model in TAGGERS:
                break
    if model not in TAGGERS:
        raise InputError(f"unknown model {model!r}; choose one of {', '.join(sorted(TAGGERS))}")
    from jetace.taggers.base import renamed_params

    return TAGGERS[model](**renamed_params(params))


def _feature_module(spec: dict[str, Any]) -> tuple[torch.nn.Module, int]:
    """The feature module of ``spec`` and its max_particles (default 128)."""
    from jetace.features import feature_module

    return feature_module(dict(spec))


def _options(read: ReadOptions | None, run: RunOptions | None, options: dict[str, Any]
             ) -> dict[str, Any]:
    """The ``read`` and ``run`` arguments of :func:`_fit_model` from a public function's."""
    read, run = resolve_options(read, run, **options)
    return {"read": read, "run": run}


def _check_disjoint(first, second, names: tuple[str, str]) -> None:
    """Raise InputError if a file is given in both input sets."""
    from jetace.io import expand_paths

    same = ({os.path.realpath(p) for p in expand_paths(first)}
            & {os.path.realpath(p) for p in expand_paths(second)})
    if same:
        raise InputError(f"the same file(s) given as {names[0]} and as {names[1]}: "
                         f"{', '.join(sorted(same))}")


def _fit_model(sets, classes: list[str], tagger: Tagger, *, spec: dict[str, Any],
               labels: list[str] | None, val_fraction: float, seed: int, validate,
               read: ReadOptions, run: RunOptions, weight_branch: str | None,
               bad_jets: list[tuple[str, int, str]] | None, model_name: str,
               ) -> tuple[JetaceModel, dict[str, Any]]:
    """Shared pipeline: features of ``sets`` -> seeded split -> ``tagger.fit`` -> model.

    ``sets`` as in :func:`collect_features`; ``validate(scores, y_val, w_val)`` returns
    the validation metrics (a dict, possibly empty) from the held-out signal scores
    (``w_val``: their weights, None without a weight branch).
    When jets were held out, the tagger is then fitted again, with the same settings, on
    all jets: the report describes the held-out check, the saved model uses every jet.
    ``weight_branch`` sets the schema's per-jet weight branch.
    """
    from jetace.io import expand_paths
    from jetace.schema import resolve_schema, with_weight

    if weight_branch is not None:
        read = dataclasses.replace(read, schema=with_weight(read.schema, weight_branch))
    features, max_particles = _feature_module(spec)
    run = dataclasses.replace(run, device=resolve_device(run.device))
    weight = resolve_schema(read.schema).weight
    weighted = weight is not None
    if weighted and "sample_weight" not in inspect.signature(tagger.fit).parameters:
        raise InputError(f"the {model_name} tagger does not take per-jet weights; drop the "
                         "weight branch")
    out = collect_features(sets, {**features.spec, "max_particles": max_particles}, read, run,
                           labels=labels, weights=weighted, bad_jets=bad_jets)
    X, y = out[0], out[1]
    w = out[2] if weighted else None
    fit_kw = {} if w is None else {"sample_weight": w}
    tr, va = split_indices(len(y), val_fraction, seed)
    counts = ({c: int((y == i).sum()) for i, c in enumerate(classes)} if labels is not None
              else {name: int((y == i).sum()) for name, _, i in sets})
    t0 = time.perf_counter()
    tagger.fit(X[torch.as_tensor(tr, device=X.device)], y[tr],
               **{k: v[tr] for k, v in fit_kw.items()})
    if X.device.type == "cuda":
        torch.cuda.synchronize(X.device)
    seconds = time.perf_counter() - t0
    report: dict[str, Any] = {"training_seconds": seconds, "n_train": len(tr), "n_val": len(va),
                              "n_jets_per_class": counts,
                              "device": str(X.device), "model": model_name}
    if len(va):
        scores = to_numpy(tagger.signal_score(X[torch.as_tensor(va, device=X.device)]))
        validation = validate(scores, y[va], None if w is None else w[va])
        if validation:
            report["validation"] = validation
        t1 = time.perf_counter()
        tagger = clone(tagger).fit(X, y, **fit_kw)
        report["refit_seconds"] = time.perf_counter() - t1
    fitted = getattr(tagger, "classes_", None)
    fitted_classes = classes if fitted is None else [classes[int(i)] for i in fitted]
    result = JetaceModel(features, tagger, fitted_classes, max_particles=max_particles,
                         feature_dtype=X.dtype)
    result.metadata.update({
        "training_seconds": round(seconds, 3), "n_train": len(y), "n_val_check": len(va),
        "seed": seed, "val_fraction": val_fraction, "model": model_name,
        "weight_branch": weight,
        "validation": report.get("validation", {}),
        "inputs": {name: [os.path.basename(p) for p in expand_paths(paths)]
                   for name, paths, _ in sets},
    })
    return result, report


def train_model(*, signal=None, background=None, inputs=None, labels: list[str] | None = None,
                spec: dict[str, Any] | None = None, model: str = presets.SUPERVISED.model,
                tagger_params: dict[str, Any] | None = None,
                val_fraction: float = presets.SUPERVISED.val_fraction,
                seed: int = 0, weight_branch: str | None = None,
                bad_jets: list[tuple[str, int, str]] | None = None,
                read: ReadOptions | None = None, run: RunOptions | None = None,
                **options: Any) -> tuple[JetaceModel, dict[str, Any]]:
    """Train a supervised model on ROOT files; returns (model, report).

    Binary: ``signal`` and ``background`` paths. Multi-class: ``inputs`` paths and
    ``labels`` (label branch names, two or more; one class each). The features follow
    ``spec`` (default :data:`jetace.presets.SUPERVISED_SPEC`: bip order 4, degree 7,
    mirrored). ``tagger_params`` go to the tagger over the preset's
    (:func:`jetace.presets.tagger_params`). A seeded
    ``val_fraction`` of the jets is held out; the report holds training time, jet counts
    and validation metrics
    (binary: :func:`jetace.metrics.binary_metrics`; multi-class: accuracy).
    ``skip_bad``: skip unreadable input files with a warning instead of stopping;
    ``bad_jets``: a list to leave bad jets out instead (see :func:`collect_features`).
    ``weight_branch``: a flat per-jet weight branch (or the schema's ``weight``): the
    fit, the held-out validation metrics and the refit are weighted by it.
    """
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
        _check_disjoint(signal, background, ("signal", "background"))
        sets, classes = [("background", background, 0), ("signal", signal, 1)], \
            ["background", "signal"]

    def validate(scores: np.ndarray, y_val: np.ndarray, w_val=None) -> dict[str, Any]:
        from jetace.metrics import binary_metrics

        if len(classes) == 2 and np.unique(y_val).size == 2:
            return binary_metrics(scores, y_val, sample_weight=w_val)
        if scores.ndim == 2:
            right = scores.argmax(1) == y_val
            return {"accuracy": float(np.average(right, weights=w_val))}
        return {}

    tagger = make_tagger(model, **{**presets.tagger_params("supervised", model),
                                   **(tagger_params or {})})
    return _fit_model(sets, classes, tagger, spec=spec or presets.default_spec("supervised"),
                      labels=labels, val_fraction=val_fraction, seed=seed,
                      validate=validate, model_name=model,
                      weight_branch=weight_branch, bad_jets=bad_jets,
                      **_options(read, run, options))


def train_unsupervised(*, background=None, inputs=None,
                       method: str = presets.ANOMALY.model,
                       spec: dict[str, Any] | None = None,
                       tagger_params: dict[str, Any] | None = None,
                       val_fraction: float = presets.ANOMALY.val_fraction,
                       seed: int = 0, weight_branch: str | None = None,
                       bad_jets: list[tuple[str, int, str]] | None = None,
                       read: ReadOptions | None = None, run: RunOptions | None = None,
                       **options: Any) -> tuple[JetaceModel, dict[str, Any]]:
    """Train an anomaly detector or a clustering tagger without labels; (model, report).

    ``method``: ``"gaussian"``, ``"gmm"``, ``"autoencoder"`` (anomaly scores fitted on
    ``background`` jets only: :mod:`jetace.taggers.anomaly`) or
    ``"cluster"`` (an unlabelled sample, ``inputs`` or ``background``:
    :mod:`jetace.taggers.cluster`); ``"ensemble"`` averages three autoencoders' and a
    GMM's background tail scores (the best of them on top vs QCD jets). Features:
    ``spec``, default :data:`jetace.presets.ANOMALY_SPEC` (mirrored BIP(3,6) of the 32
    hardest constituents). ``tagger_params`` go to the tagger's constructor
    (``seed`` defaults to ``seed``). The model's classes are ``["background",
    "signal"]`` and its score is larger for more anomalous (signal-like) jets, so
    ``jetace evaluate`` takes the anomaly as signal. With ``val_fraction`` > 0 a seeded
    part of the jets is held out and the report gives quantiles of its scores (the
    thresholds that keep 90%, 99% and 99.9% of background jets).
    """
    if method not in presets.UNSUPERVISED:
        raise InputError(f"unknown unsupervised method {method!r}; choose one of "
                         f"{', '.join(presets.UNSUPERVISED)}")
    if (background is None) == (inputs is None):
        what = "the unlabelled sample" if method == "cluster" else "background jets"
        raise InputError(f"unsupervised training ({method}) needs {what}: give either "
                         f"background or input files (one of them)")
    name = "background" if inputs is None else "input"
    tagger = make_tagger(method, **{"seed": seed, **presets.tagger_params("anomaly", method),
                                    **(tagger_params or {})})

    def validate(scores: np.ndarray, y_val: np.ndarray, w_val=None) -> dict[str, Any]:
        q = np.quantile(scores, [0.9, 0.99, 0.999])
        return {"background_score_quantiles": {"0.9": float(q[0]), "0.99": float(q[1]),
                                               "0.999": float(q[2])}}

    return _fit_model([(name, inputs if background is None else background, 0)],
                      ["background", "signal"], tagger,
                      spec=spec or presets.default_spec("anomaly"),
                      labels=None, val_fraction=val_fraction, seed=seed,
                      validate=validate, model_name=method,
                      weight_branch=weight_branch, bad_jets=bad_jets,
                      **_options(read, run, options))


def train_cwola(*, mixture_a, mixture_b, model: str = presets.WEAK.model,
                spec: dict[str, Any] | None = None, tagger_params: dict[str, Any] | None = None,
                val_fraction: float = presets.WEAK.val_fraction, seed: int = 0,
                weight_branch: str | None = None,
                bad_jets: list[tuple[str, int, str]] | None = None,
                read: ReadOptions | None = None, run: RunOptions | None = None,
                **options: Any) -> tuple[JetaceModel, dict[str, Any]]:
    """Weakly supervised training (CWoLa) on two mixed samples; returns (model, report).

    ``mixture_a``: files of the mixture richer in signal; ``mixture_b``: the other one.
    No jet-level labels are read: a :class:`~jetace.taggers.weak.CWoLaTagger` with inner
    tagger ``model`` (``"linear"`` or ``"mlp"``; ``tagger_params`` go to it, over the
    preset's) learns to tell A from B, which ranks jets by signal-likeness. Features:
    ``spec``, default :data:`jetace.presets.WEAK_SPEC`. The model's classes are
    ``["background", "signal"]`` (score larger = more signal-like). The held-out
    ``val_fraction`` gives A-versus-B metrics (``validation``: an AUC above 0.5 means
    the mixtures differ; it is far below the signal-versus-background AUC).
    """
    from jetace.taggers.weak import CWoLaTagger

    if not mixture_a or not mixture_b:
        raise InputError("CWoLa training needs files for both mixtures (A: signal-richer, B)")
    _check_disjoint(mixture_a, mixture_b, ("mixture A", "mixture B"))
    params = {**presets.tagger_params("weak", model), **(tagger_params or {})}
    tagger = CWoLaTagger(classifier=model, classifier_params=params or None, seed=seed)

    def validate(scores: np.ndarray, y_val: np.ndarray, w_val=None) -> dict[str, Any]:
        from jetace.metrics import binary_metrics

        if np.unique(y_val).size < 2:
            return {}
        m = binary_metrics(scores, y_val, sample_weight=w_val)
        return {"mixture_auc": m["auc"], "n_a": int(y_val.sum()),
                "n_b": int((~y_val.astype(bool)).sum())}

    return _fit_model([("mixture B", mixture_b, 0), ("mixture A", mixture_a, 1)],
                      ["background", "signal"], tagger,
                      spec=spec or presets.default_spec("weak"), labels=None,
                      val_fraction=val_fraction, seed=seed, validate=validate,
                      model_name=f"cwola-{model}",
                      weight_branch=weight_branch, bad_jets=bad_jets,
                      **_options(read, run, options))


def training_summary(model: JetaceModel, report: dict[str, Any]) -> list[str]:
    """The lines ``jetace train`` prints about a training run: jets, features, time,
    device, and the validation metrics of the mode."""
    counts = ", ".join(f"{k} {v}" for k, v in report["n_jets_per_class"].items())
    lines = [f"trained {report['model']} tagger on {report['n_train']} jets ({counts}; "
             f"{report['n_val']} held out) with {model.num_features} features in "
             f"{report['training_seconds']:.1f} s on {report['device']}"]
    if report["n_val"]:
        lines.append(f"refitted on all {report['n_train'] + report['n_val']} jets for the "
                     f"saved model in {report['refit_seconds']:.1f} s")
    val = report.get("validation", {})
    if "auc" in val:
        lines.append(f"validation: AUC {val['auc']:.4f}, accuracy {val['accuracy']:.4f}, "
                     f"1/eps_B at eps_S=0.3: {val['rejection_at_0.3']:.1f}, "
                     f"at 0.5: {val['rejection_at_0.5']:.1f}")
    elif "accuracy" in val:
        lines.append(f"validation: accuracy {val['accuracy']:.4f}")
    elif "mixture_auc" in val:
        lines.append(f"validation: mixture A vs B AUC {val['mixture_auc']:.4f} (truth-free; "
                     "below the signal-vs-background AUC)")
    elif "background_score_quantiles" in val:
        q = val["background_score_quantiles"]
        lines.append("validation: background score quantiles "
                     + ", ".join(f"{k}: {v:.4g}" for k, v in q.items()))
    return lines
