"""Scoring jets with a trained model: tensors, awkward arrays and streamed files.

:func:`score` (padded jets), :func:`score_jets` (awkward arrays) and :func:`iter_scores`
(files, chunk by chunk) compute the scores of a :class:`~jetace.model_file.JetaceModel`;
:func:`fused_module` decides whether its features and tagger run as one fused module.
:func:`evaluate_files` (metrics against truth) and :func:`predict_to_file` (per-jet
scores) are ``jetace evaluate`` and ``jetace predict``; usable on their own::

    from jetace.model_file import load_model
    from jetace.scoring import evaluate_files, predict_to_file, score
    model = load_model("top.model")
    scores = score(model, p4, mask)                  # padded jets, one score per jet
    metrics, scores, labels = evaluate_files(model, ["top_test.root"], ["qcd_test.root"])
    predict_to_file(model, ["data.root"], "scores.parquet")
"""

from __future__ import annotations

import dataclasses
import functools
import json
import weakref
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError, JetaceError
from jetace.model_file import JetaceModel
from jetace.numerics import to_numpy
from jetace.run.options import ReadOptions, RunOptions, resolve_options

__all__ = ["score", "score_jets", "iter_scores", "signal_score", "fused_module",
           "evaluate_files", "predict_to_file", "rate_matched_threshold"]

#: model -> (its features, its tagger, their fused module or None), built on first use
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fused_module(model: JetaceModel) -> torch.nn.Module | None:
    """The model's features and linear tagger as one
    :class:`~jetace.features.fused.FusedLinear` (scores without forming the feature
    matrix), or None where the tagger is not an affine map of the raw features or the
    features are not BIP. Built on first use, again if the model's features or tagger
    were replaced."""
    cached = _FUSED.get(model)
    if cached is not None and cached[0] is model.features and cached[1] is model.tagger:
        return cached[2]
    from jetace.features.bip import BIPFeatures
    from jetace.features.fused import FusedLinear

    affine = model.tagger.raw_affine() if isinstance(model.features, BIPFeatures) else None
    fused = None if affine is None else FusedLinear(model.features, *affine)
    _FUSED[model] = (model.features, model.tagger, fused)
    return fused


def _module_device(module: torch.nn.Module) -> torch.device | None:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return None


def score(model: JetaceModel, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Scores of padded jets: p4 (B, P, 4) as (E, px, py, pz) in GeV, mask (B, P) bool.

    Features are computed in p4's dtype on p4's device (the model's feature module is
    moved there). Returns (B,) for a binary or unsupervised tagger (larger = more
    signal-like / anomalous), (B, K) logits for a multi-class one, on p4's device.
    """
    if p4.ndim != 3 or p4.shape[-1] != 4 or mask.shape != p4.shape[:2]:
        raise InputError(f"expected p4 (B, P, 4) and mask (B, P), got {tuple(p4.shape)} "
                         f"and {tuple(mask.shape)}")
    if _module_device(model.features) not in (None, p4.device):
        model.features = model.features.to(p4.device)
    fused = fused_module(model)
    with torch.no_grad():
        if fused is not None:
            return _fused_scores(fused.to(p4.device)(p4, mask.to(torch.bool)))
        x = model.features(p4, mask.to(torch.bool))
    return torch.as_tensor(model.tagger.signal_score(x))


def score_jets(model: JetaceModel, jets, batch_size: int = 4096,
               device: str | torch.device = "cpu") -> np.ndarray:
    """Scores of raw jets (an awkward array from :func:`jetace.read_jets`) as numpy,
    (n,) or (n, K), in the order of ``jets``; features in the model's feature dtype."""
    from jetace.io import to_padded

    out = []
    for i in range(0, len(jets), batch_size):
        p4, mask = to_padded(jets[i:i + batch_size], max_particles=model.max_particles,
                             device=device, dtype=model.feature_dtype,
                             species=getattr(model.features, "species", ()))
        out.append(score(model, p4, mask).cpu().numpy())
    if not out:
        return np.zeros((0,) if len(model.classes) <= 2 else (0, len(model.classes)))
    return np.concatenate(out)


def iter_scores(model: JetaceModel, paths, read: ReadOptions | None = None,
                run: RunOptions | None = None, *, desc: str | None = None,
                bad_jets: list[tuple[str, int, str]] | None = None, **options: Any):
    """Stream ROOT files: yield ``(jets_chunk, scores)`` per chunk, every jet in order.

    ``scores`` is a numpy array (n,) or (n, K) as :func:`score`; only one chunk of jets
    and features is in memory at a time. ``read``, ``run``: the option objects of
    :mod:`jetace.run.options` (their field names also as keywords); ``workers`` > 1:
    that many CPU worker processes compute features and scores (see
    :func:`jetace.run.features.iter_features`; ``jets_chunk`` then lacks the
    constituents). ``dtype``: the features' floating type (default: the model's feature
    dtype). No NaN or infinite score is yielded: its jet
    raises, or with a ``bad_jets`` list is left out and listed there.
    """
    from jetace.run.features import iter_features

    fused = fused_module(model)
    module, finish = (model.features, functools.partial(_tagger_scores, model.tagger)) \
        if fused is None else (fused, _numpy_fused_scores)
    read, run = resolve_options(read, run, **options)
    if run.dtype is None:
        run = dataclasses.replace(run, dtype=model.feature_dtype)
    yield from iter_features(paths, module, read, run, desc=desc or "scoring",
                             max_particles=model.max_particles, transform=finish,
                             bad_jets=bad_jets)


def signal_score(model: JetaceModel, scores: np.ndarray,
                 signal_class: str | None = None) -> np.ndarray:
    """One score per jet for a signal-vs-rest comparison.

    Binary/unsupervised models: ``scores`` as they are. Multi-class models: the logit
    log(p_s / (1 - p_s)) of class ``signal_class`` (a name in ``model.classes``).
    """
    scores = np.asarray(scores)
    if scores.ndim == 1:
        return scores
    if signal_class not in model.classes:
        raise InputError(f"this model has classes {model.classes}; name the signal class "
                         f"with one of them (got {signal_class!r})")
    i = model.classes.index(signal_class)
    logp = torch.log_softmax(torch.as_tensor(scores, dtype=torch.float64), dim=1)
    rest = torch.logsumexp(torch.cat([logp[:, :i], logp[:, i + 1:]], dim=1), dim=1)
    return (logp[:, i] - rest).numpy()


def _tagger_scores(tagger, feats: torch.Tensor) -> np.ndarray:
    return to_numpy(tagger.signal_score(feats))


def _fused_scores(out: torch.Tensor) -> torch.Tensor:
    """FusedLinear's (B, K) output as a decision function: (B,) for K = 1."""
    return out[:, 0] if out.shape[1] == 1 else out


def _numpy_fused_scores(out: torch.Tensor) -> np.ndarray:
    return to_numpy(_fused_scores(out))


def evaluate_files(model: JetaceModel, signal=None, background=None, *,
                   signal_class: str | None = None, weight_branch: str | None = None,
                   inputs=None, signal_label: str | None = None,
                   read: ReadOptions | None = None, run: RunOptions | None = None,
                   bad_jets: list[tuple[str, int, str]] | None = None, **options: Any,
                   ) -> tuple[dict[str, float | int], np.ndarray, np.ndarray]:
    """Score signal and background files; returns (metrics, scores, labels).

    Either ``signal`` and ``background`` files, or ``inputs`` holding both classes (as
    the Top Tagging reference files do) with ``signal_label``, the label field that is
    True for signal jets (e.g. ``"label_Tbqq"``).

    ``metrics`` is :func:`jetace.metrics.binary_metrics` (auc, accuracy,
    rejection_at_0.3, rejection_at_0.5, n_signal, n_background) plus
    ``accuracy_threshold``, the cut of the accuracy: 0 (probability 0.5) for supervised
    models, whose scores are logits (``Tagger.logit_scores``); for anomaly, clustering
    and CWoLa models, whose scores only rank jets, :func:`rate_matched_threshold`.
    ``scores`` (n,) is the
    signal score (for a multi-class model that of ``signal_class``, default the first
    class); ``labels`` (n,) bool, True for signal jets. ``read``, ``run``, ``bad_jets``
    and keyword ``options`` as :func:`iter_scores`.
    ``weight_branch`` (or the schema's ``weight``): a flat per-jet weight branch; the
    metrics are then weighted (:mod:`jetace.metrics`: negative weights are accepted) and
    carry ``sum_weight_signal`` / ``sum_weight_background``.
    """
    from jetace.metrics import binary_metrics
    from jetace.schema import with_weight

    if (inputs is None) == (signal is None and background is None) or \
            (inputs is None and (signal is None or background is None)) or \
            (inputs is not None and not signal_label):
        raise InputError("evaluation takes signal and background files, or input files "
                         "with both classes and the signal's label field")
    read, run = resolve_options(read, run, **options)
    schema = with_weight(read.schema, weight_branch)
    read = dataclasses.replace(read, schema=schema)
    signal_class = signal_class or model.classes[0]
    sets = [("inputs", inputs)] if inputs is not None else [("signal", signal),
                                                            ("background", background)]
    parts, weights, truth = [], [], []
    for name, paths in sets:
        scores, w = [], []
        for chunk, s in iter_scores(model, paths, read, run, desc=f"scoring ({name})",
                                    bad_jets=bad_jets):
            scores.append(s)
            if schema.weight is not None:
                w.append(np.asarray(chunk["weight"], dtype=np.float64))
            if signal_label:
                if signal_label not in chunk.fields:
                    have = [f for f in chunk.fields if f.startswith("label_")]
                    raise InputError(f"no label field {signal_label!r} in {paths}; label "
                                     f"fields there: {', '.join(have) or 'none'}")
                truth.append(np.asarray(chunk[signal_label]).astype(bool))
        parts.append(signal_score(model, np.concatenate(scores), signal_class)
                     if scores else np.zeros(0))
        weights.append(np.concatenate(w) if w else np.zeros(0))
    scores = np.concatenate(parts)
    labels = np.concatenate(truth) if inputs is not None else \
        np.r_[np.ones(len(parts[0]), bool), np.zeros(len(parts[1]), bool)]
    sample_weight = np.concatenate(weights) if schema.weight is not None else None
    threshold = 0.0 if model.tagger.logit_scores else rate_matched_threshold(scores, labels)
    metrics = binary_metrics(scores, labels, threshold, sample_weight=sample_weight)
    metrics["accuracy_threshold"] = threshold
    return metrics, scores, labels


def rate_matched_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut above which as many jets lie as there are signal jets (the scores of
    anomaly, clustering and CWoLa models rank jets but have no natural cut)."""
    n_signal = int(np.sum(labels))
    if n_signal == 0 or n_signal == len(scores):
        return float(np.max(scores)) if n_signal == 0 else float(np.min(scores)) - 1.0
    return float(np.sort(scores)[len(scores) - n_signal - 1])


def _check_float32(written: np.ndarray, scores: np.ndarray, offset: int, output) -> None:
    """Scores that overflow float32 when written are an error, not a silent infinity."""
    bad = np.flatnonzero(~np.isfinite(written))
    if len(bad):
        i = int(bad[0])
        raise JetaceError(f"{output}: the score {scores[i]:.3g} of jet {offset + i} (in input "
                          "order) does not fit the float32 score column; nothing is written")


def predict_to_file(model: JetaceModel, paths, output, read: ReadOptions | None = None,
                    run: RunOptions | None = None, *,
                    bad_jets: list[tuple[str, int, str]] | None = None,
                    **options: Any) -> int:
    """Write one row per input jet, in input order, to ``output`` (.parquet or .root).

    Columns: the jet-level fields and labels, and ``score`` (binary model: the signal
    logit) or ``score_<class>`` per class (multi-class: softmax probabilities). Returns
    the number of jets written; no jets at all is an :class:`InputError`. Options as
    :func:`iter_scores`.
    """
    from jetace.outputs import TableWriter, check_output_of, jet_columns

    check_output_of(output, paths)
    names = [c[len("label_"):] if c.startswith("label_") else c for c in model.classes]
    meta = {"jetace_model": json.dumps({"classes": model.classes, "features": model.spec})}
    n = 0
    with TableWriter(output, metadata=meta) as writer:
        for chunk, scores in iter_scores(model, paths, read, run,
                                         desc=f"predict -> {output}", bad_jets=bad_jets,
                                         **options):
            cols = jet_columns(chunk)
            if scores.ndim == 1:
                cols["score"] = scores.astype(np.float32)
                _check_float32(cols["score"], scores, n, output)
            else:
                prob = torch.softmax(torch.as_tensor(scores, dtype=torch.float64), 1).numpy()
                for i, name in enumerate(names):
                    cols[f"score_{name}"] = prob[:, i].astype(np.float32)
            writer.write(cols)
            n += len(chunk)
        if n == 0:
            raise InputError(f"no jets in {', '.join(map(str, paths))}")
    return n
