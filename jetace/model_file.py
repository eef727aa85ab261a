"""Trained models as one versioned file: features + tagger + class names + metadata.

This module is the artefact only: build, save, load and verify a model, and export it
(:meth:`JetaceModel.as_module`, :meth:`JetaceModel.to_onnx`). Scoring jets with it
(padded tensors, awkward arrays, streamed files, and whether features and a linear
tagger run fused) is :mod:`jetace.scoring`.

A model file is ``torch.save`` of a plain dict (tensors and JSON-compatible values, no
pickled code), read back with ``torch.load(weights_only=True)``. The feature module is
rebuilt from its spec (:func:`jetace.features.features_from_spec`) and the tagger from
its registered kind and state (:func:`jetace.taggers.tagger_from_state`), so any
registered tagger, supervised or not, can be stored.

``feature_definition`` is the :data:`jetace.features.FEATURE_DEFINITION` the model was
trained with (absent in files written before it was recorded: definition 1). Loading
checks it with :func:`jetace.features.definition_change`: a model of definition 1 is
used as it is, with a warning, unless its features changed (then it is refused).

Layout (format version 1)::

    {"format": "jetace-model", "format_version": 1,
     "features": {spec...}, "feature_definition": 2, "num_features": F,
     "feature_dtype": "float32",
     "tagger_kind": "linear", "tagger_state": {...},
     "classes": ["background", "signal"], "metadata": {...}}

Verification on load (:meth:`JetaceModel.load`), each failure a
:class:`~jetace.errors.ModelFileError` naming the file:

- the file is a zip archive whose every member passes its CRC-32 check (torch's own
  reader does not check them, so a flipped byte inside a stored tensor would otherwise
  give changed scores),
- the header names this format and an integer format version this jetace reads,
- the feature spec lies within :data:`SPEC_LIMITS` and the stored feature count within
  ``SPEC_LIMITS["num_features"]``, checked before any feature plan is built (a hostile
  spec such as order 12, degree 40 would otherwise keep the plan builder busy for
  hours),
- every stored weight array or tensor of the tagger is finite.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jetace.errors import InputError, ModelFileError
from jetace.features import FEATURE_DEFINITION, definition_change, features_from_spec
from jetace.taggers.base import Tagger, tagger_from_state

__all__ = ["JetaceModel", "load_model", "FORMAT", "FORMAT_VERSION", "SPEC_LIMITS",
           "ONNX_OPSET"]

FORMAT = "jetace-model"
FORMAT_VERSION = 1
_NDARRAY = "__ndarray__"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: ONNX opset of :meth:`JetaceModel.to_onnx`: that of torch's exporter (torch 2.13).
ONNX_OPSET = 18

#: Largest feature specs a model file may ask for. The largest allowed plans take a few
#: seconds to build (BIP(6, 10), 53,955 features: 4 s; BIP(5, 11): 5 s on one core);
#: BIP(6, 12) would take 18 s and 268k features, and the growth is steep beyond.
#: ``order_times_degree`` bounds the product of the body order and the degree.
SPEC_LIMITS = {"order": 6, "degree": 16, "order_times_degree": 60, "lmax": 12,
               "n_radial": 32, "max_particles": 4096, "num_features": 100_000, "rank": 8,
               "full_channel_products": 81}


def _encode(obj: Any, where: str = "state") -> Any:
    """Map a tagger state onto what ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, np.ndarray):
        if obj.dtype == object or obj.dtype.kind in "USV":
            raise ModelFileError(f"cannot store {where}: numpy array of dtype {obj.dtype}")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        bad = [k for k in obj if not isinstance(k, str)]
        if bad:
            raise ModelFileError(f"cannot store {where}: non-string keys {bad[:3]}")
        return {k: _encode(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise ModelFileError(f"cannot store {where}: value of type {type(obj).__name__}")


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


class _Scorer(torch.nn.Module):
    """(p4 (B, P, 4), mask (B, P)) -> features -> tagger scores, as one module."""

    def __init__(self, features: torch.nn.Module, head: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.features, self.head, self.dtype = features, head, dtype

    @property
    def species(self) -> tuple[str, ...]:
        """The species channels whose weights follow the momenta in the input."""
        return tuple(getattr(self.features, "species", ()))

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.features(p4.to(self.dtype), mask.to(torch.bool))
        return self.head(x).to(torch.float32)


class JetaceModel:
    """Feature module + fitted tagger + class names + metadata, as stored in a model file.

    Scores of jets: :func:`jetace.scoring.score` (padded tensors),
    :func:`jetace.scoring.score_jets` (awkward arrays), :func:`jetace.scoring.iter_scores`
    (streamed files).

    Parameters
    ----------
    features : the feature module (with a ``spec`` dict, as every jetace family has).
    tagger : a fitted, registered :class:`~jetace.taggers.base.Tagger`.
    classes : class names in the order of the tagger's outputs; for a binary tagger
        ``[background, signal]`` (its score is the signal logit, larger = more signal).
    max_particles : constituents kept per jet when padding raw jets.
    feature_dtype : dtype the features are computed in (as in training).
    metadata : JSON-compatible extras (training time, number of jets, files...).
    """

    def __init__(self, features: torch.nn.Module, tagger: Tagger, classes: list[str],
                 max_particles: int = 128, feature_dtype: torch.dtype = torch.float32,
                 metadata: dict[str, Any] | None = None):
        from jetace import __version__

        self.features = features
        self.tagger = tagger
        self.classes = [str(c) for c in classes]
        self.max_particles = int(max_particles)
        self.feature_dtype = feature_dtype
        self.metadata = {"jetace_version": __version__,
                         "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         **(metadata or {})}
        self.format_version = FORMAT_VERSION

    # -- what the model computes ------------------------------------------------------
    @property
    def spec(self) -> dict[str, Any]:
        """The feature spec (with ``max_particles``) that rebuilds the feature module."""
        return {**dict(self.features.spec), "max_particles": self.max_particles}

    @property
    def num_features(self) -> int:
        return int(self.features.num_features)

    # -- files ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "features": _encode(self.spec, "features"),
            "feature_definition": FEATURE_DEFINITION,
            "num_features": self.num_features,
            "feature_dtype": str(self.feature_dtype).removeprefix("torch."),
            "tagger_kind": self.tagger.kind,
            "tagger_state": _encode(self.tagger.get_state(), "tagger_state"),
            "classes": list(self.classes),
            "metadata": _encode(self.metadata, "metadata"),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to ``path`` (written to a temporary name, then renamed)."""
        from jetace.outputs import atomic_output

        path = Path(path)
        with atomic_output(path) as tmp:
            torch.save(self.to_dict(), tmp)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> JetaceModel:
        """Read a model file; raises :class:`ModelFileError` for a missing, corrupted or
        foreign file and for another format version."""
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"model file {path} does not exist")
        _check_archive(path)
        try:
            data = torch.load(path, map_location=device, weights_only=True)
        except Exception as exc:
            raise ModelFileError(f"{path} is not a jetace model file, or it is corrupted "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelFileError(f"{path} is not a jetace model file (no '{FORMAT}' header)")
        version = data.get("format_version")
        if type(version) is not int:
            raise ModelFileError(f"{path}: invalid model format version {version!r} (an "
                                 "integer is expected); the file is damaged")
        if version != FORMAT_VERSION:
            from jetace import __version__

            raise ModelFileError(f"{path} has model format version {version}, but jetace "
                                 f"{__version__} reads only version {FORMAT_VERSION}; use the "
                                 "jetace version that wrote it, or retrain")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model") -> JetaceModel:

        try:
            spec = _decode(data["features"])
            definition = int(data.get("feature_definition", 1))
            n_feat = int(data["num_features"])
        except Exception as exc:
            raise ModelFileError(f"{source} is damaged: no feature spec "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        _check_spec(spec, n_feat, source)
        reason = definition_change(spec, definition)
        if reason is not None:
            raise ModelFileError(f"{source} was trained on feature definition {definition}, "
                                 f"but this jetace computes definition {FEATURE_DEFINITION}: "
                                 f"{reason}; retrain it, or score it with the jetace "
                                 "version that wrote it")
        if definition != FEATURE_DEFINITION:
            warnings.warn(f"{source} was trained on feature definition {definition}; jetace "
                          f"computes definition {FEATURE_DEFINITION}, whose features differ "
                          "only on spacelike constituents (docs/definition.md): the model "
                          "is used as it is", stacklevel=3)
        try:
            state = _decode(data["tagger_state"])
        except Exception as exc:
            raise ModelFileError(f"{source} is damaged: cannot read the tagger state "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        _check_finite(state, source, "tagger_state")
        try:
            features = features_from_spec(spec)
            tagger = tagger_from_state(data["tagger_kind"], state)
            dtype = _DTYPES[data["feature_dtype"]]
            classes = data["classes"]
            metadata = _decode(data["metadata"])
        except ModelFileError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{source} is damaged: cannot rebuild the model "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from exc
        if int(features.num_features) != n_feat:
            raise ModelFileError(f"{source}: its feature spec {spec} now gives "
                                 f"{features.num_features} features, the tagger expects {n_feat}")
        model = cls(features, tagger, classes, max_particles=spec.get("max_particles", 128),
                    feature_dtype=dtype)
        model.metadata = metadata
        return model

    # -- ONNX -----------------------------------------------------------------------
    def as_module(self, dtype: torch.dtype | None = None) -> torch.nn.Module:
        """Features + classifier as one CPU ``torch.nn.Module``: (p4, mask) -> scores,
        computed in ``dtype`` (default: the model's feature dtype), returned as float32."""
        import copy

        head_fn = getattr(self.tagger, "as_module", None)
        if head_fn is None:
            raise InputError(f"tagger kind {self.tagger.kind!r} cannot be exported as one graph")
        dtype = dtype or self.feature_dtype
        head = copy.deepcopy(head_fn()).cpu().to(dtype)
        return _Scorer(copy.deepcopy(self.features).cpu(), head, dtype).eval()

    def to_onnx(self, path: str | os.PathLike, opset: int = ONNX_OPSET,
                example: tuple[torch.Tensor, torch.Tensor] | None = None,
                dtype: torch.dtype = torch.float64) -> Path:
        """Export features + classifier as one ONNX graph (one file, weights inside).

        Inputs: ``p4`` (B, P, 4) float32 (E, px, py, pz in GeV) and ``mask`` (B, P) bool,
        with dynamic B and P; output ``score`` (float32): (B,) or (B, K) as
        :func:`jetace.scoring.score`. Inside, the graph computes in ``dtype``: float64
        (default) reproduces ``score(model, p4.double(), mask)``; high body-order
        products span many decades, and a linear model on them can turn float32 rounding
        into 1e-3 changes of the score.

        Exported with torch's ``torch.export``-based exporter (``torch.onnx.export(...,
        dynamo=True)``, which needs ``onnxscript``: the ``onnx`` extra) at ``opset``
        (default :data:`ONNX_OPSET`, the exporter's own). Its scalar constants are built
        in the dtype the graph asks for (:func:`_scalar_tensor`).
        """
        path = Path(path)
        try:
            import onnxscript  # noqa: F401  (the exporter's ONNX builder)
        except ImportError as exc:
            raise InputError("ONNX export needs the 'onnx' extra (onnx, onnxscript, "
                             "onnxruntime): pip install 'jetace[onnx]'") from exc
        module = self.as_module(dtype)
        if example is None:
            p4 = torch.zeros(2, self.max_particles, 4)
            p4[:, :3] = torch.tensor([[100.0, 60.0, 50.0, 50.0], [50.0, 30.0, 20.0, 30.0],
                                      [20.0, 10.0, 12.0, 10.0]])
            mask = torch.zeros(2, self.max_particles, dtype=torch.bool)
            mask[:, :3] = True
            example = (p4, mask)
        from jetace.outputs import atomic_output

        axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("particles")}
        # the exporter's notes on unused axis names and on torchvision ops it skips
        registry_log = logging.getLogger("torch.onnx._internal.exporter._registration")
        level = registry_log.level
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", FutureWarning)
                registry_log.setLevel(logging.ERROR)
                program = torch.onnx.export(
                    module, example, dynamo=True, input_names=["p4", "mask"],
                    output_names=["score"], opset_version=opset,
                    dynamic_shapes=(axes, axes), verbose=False,
                    custom_translation_table={torch.ops.aten.scalar_tensor.default:
                                              _scalar_tensor})
            _check_dynamic_axes(program)
            with atomic_output(path) as tmp:
                program.save(str(tmp), external_data=False)
        except (OSError, InputError):
            raise
        except Exception as exc:
            raise InputError(f"ONNX export failed: {type(exc).__name__}: {str(exc)[:300]}") from exc
        finally:
            registry_log.setLevel(level)
        return path


def _check_dynamic_axes(program) -> None:
    """Batch and particle axes of the exported inputs are symbolic. Where the traced code
    fixes one (``len(p4)`` is a Python int under ``torch.export``), the exporter falls
    back to a graph of that fixed size without an error; it is refused here."""
    for value in program.model.graph.inputs:
        for axis, name in enumerate(("batch", "particles")):
            dim = value.shape[axis]
            if isinstance(dim, int):
                raise InputError(f"ONNX export failed: the exporter fixed the {name} axis "
                                 f"(axis {axis}) of input {value.name!r} to {dim}; the "
                                 "feature or tagger code specialises that size")


def _scalar_tensor(s: float, dtype: int = -1, layout: str = "", device: str = "",
                   pin_memory: bool = False):
    """ONNX of ``aten.scalar_tensor(s, dtype)``: a constant of ``dtype`` holding ``s``.

    Replaces the exporter's own translation (onnxscript 0.7), which forms ``s`` as a
    float32 constant and casts it: in a float64 graph every Python constant of the
    feature code was then rounded to float32, 2.2e-308 (the float64 ``tiny`` that
    guards 1 / r_t in :func:`jetace.frames.axis_frame_kinematics`) became 0 and the
    padded constituents' scores NaN.
    """
    import onnx_ir as ir
    from onnxscript import opset18 as op

    kind = ir.DataType.FLOAT if dtype == -1 else ir.DataType(dtype)
    return op.Constant(value=ir.tensor(np.asarray(s, dtype=kind.numpy())))


def _check_archive(path: Path) -> None:
    """Every member of the model's zip archive passes its CRC-32 check."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path} is not a jetace model file, or it is corrupted (not "
                             f"a zip archive: {exc})") from exc
    except Exception as exc:  # truncated members, bad compression data
        raise ModelFileError(f"{path} is corrupted ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from exc
    if bad is not None:
        raise ModelFileError(f"{path} is corrupted: member {bad!r} fails its CRC check (the "
                             "file changed after it was written); use an intact copy")


def _check_spec(spec: Any, n_features: int, source: str) -> None:
    """The feature spec and feature count within :data:`SPEC_LIMITS`, before any plan."""
    if not isinstance(spec, dict):
        raise ModelFileError(f"{source} is damaged: its feature spec is not a mapping")
    for key in ("order", "degree", "lmax", "n_radial", "max_particles", "rank"):
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ModelFileError(f"{source}: feature spec {key}={value!r} is not a "
                                 "non-negative integer")
        if value > SPEC_LIMITS[key]:
            raise ModelFileError(f"{source}: feature spec {key}={value} exceeds the limit "
                                 f"{SPEC_LIMITS[key]} of model files (jetace.model_file."
                                 "SPEC_LIMITS); refused before building any feature plan")
    product = int(spec.get("order") or 0) * int(spec.get("degree") or 0)
    if product > SPEC_LIMITS["order_times_degree"]:
        raise ModelFileError(f"{source}: feature spec order {spec.get('order')} x degree "
                             f"{spec.get('degree')} = {product} exceeds the limit "
                             f"{SPEC_LIMITS['order_times_degree']} of model files; refused "
                             "before building any feature plan")
    species = spec.get("species") or ()
    if not isinstance(species, (list, tuple)) or len(species) > 8:
        raise ModelFileError(f"{source}: feature spec species={species!r} is not a short list "
                             "of channel names")
    if species and spec.get("channel_mode") == "full":
        combos = (1 + len(species)) ** int(spec.get("order") or 1)
        if combos > SPEC_LIMITS["full_channel_products"]:
            raise ModelFileError(f"{source}: feature spec multiplies {1 + len(species)} "
                                 f"channels to order {spec.get('order')} ({combos} channel "
                                 "combinations), over the limit "
                                 f"{SPEC_LIMITS['full_channel_products']} of model files; "
                                 "refused before building any feature plan")
    if not 0 < n_features <= SPEC_LIMITS["num_features"]:
        raise ModelFileError(f"{source}: {n_features} features is outside 1..."
                             f"{SPEC_LIMITS['num_features']} (the limit of model files)")


def _check_finite(state: Any, source: str, where: str) -> None:
    """Every float array or tensor in the tagger state is finite."""
    if isinstance(state, dict):
        for key, value in state.items():
            _check_finite(value, source, f"{where}.{key}")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            _check_finite(value, source, f"{where}[{i}]")
    elif isinstance(state, (torch.Tensor, np.ndarray, float)):
        values = torch.as_tensor(state)
        if values.is_floating_point() and not bool(torch.isfinite(values).all()):
            raise ModelFileError(f"{source}: stored weights {where} hold NaN or infinite "
                                 "values; the model cannot score jets")


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> JetaceModel:
    """Load a model file written by :meth:`JetaceModel.save` (see :meth:`JetaceModel.load`)."""
    return JetaceModel.load(path, device=device)
