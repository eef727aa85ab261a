"""Scoring ROOT files with a trained model: metrics against truth, and per-jet scores.

Used by ``jetace evaluate`` and ``jetace predict``; usable on their own::

    from jetace.model_file import load_model
    from jetace.scoring import evaluate_files, predict_to_file
    model = load_model("top.model")
    metrics, scores, labels = evaluate_files(model, ["top_test.root"], ["qcd_test.root"])
    predict_to_file(model, ["data.root"], "scores.parquet")
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError, JetaceError
from jetace.model_file import JetaceModel

__all__ = ["evaluate_files", "predict_to_file", "rate_matched_threshold"]


def evaluate_files(model: JetaceModel, signal=None, background=None, *,
                   signal_class: str | None = None, progress: bool = True,
                   weight_branch: str | None = None, inputs=None,
                   signal_label: str | None = None, **read_kw: Any,
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
    class); ``labels`` (n,) bool, True for signal jets. ``read_kw`` are the reading
    options of :meth:`JetaceModel.iter_scores` (tree, schema, step_size, max_jets, ...).
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
    schema = with_weight(read_kw.pop("schema", "jetclass"), weight_branch)
    signal_class = signal_class or model.classes[0]
    sets = [("inputs", inputs)] if inputs is not None else [("signal", signal),
                                                            ("background", background)]
    parts, weights, truth = [], [], []
    for name, paths in sets:
        scores, w = [], []
        for chunk, s in model.iter_scores(paths, progress=progress, desc=f"scoring ({name})",
                                          schema=schema, **read_kw):
            scores.append(s)
            if schema.weight is not None:
                w.append(np.asarray(chunk["weight"], dtype=np.float64))
            if signal_label:
                if signal_label not in chunk.fields:
                    have = [f for f in chunk.fields if f.startswith("label_")]
                    raise InputError(f"no label field {signal_label!r} in {paths}; label "
                                     f"fields there: {', '.join(have) or 'none'}")
                truth.append(np.asarray(chunk[signal_label]).astype(bool))
        parts.append(model.signal_score(np.concatenate(scores), signal_class)
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


def predict_to_file(model: JetaceModel, paths, output, *, progress: bool = True,
                    **read_kw: Any) -> int:
    """Write one row per input jet, in input order, to ``output`` (.parquet or .root).

    Columns: the jet-level fields and labels, and ``score`` (binary model: the signal
    logit) or ``score_<class>`` per class (multi-class: softmax probabilities). Returns
    the number of jets written; no jets at all is an :class:`InputError`.
    """
    from jetace.outputs import TableWriter, check_output_of, jet_columns

    check_output_of(output, paths)
    names = [c[len("label_"):] if c.startswith("label_") else c for c in model.classes]
    meta = {"jetace_model": json.dumps({"classes": model.classes, "features": model.spec})}
    n = 0
    with TableWriter(output, metadata=meta) as writer:
        for chunk, scores in model.iter_scores(paths, progress=progress,
                                               desc=f"predict -> {output}", **read_kw):
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
