"""Branch-name schemas: which ROOT branches hold the constituents, jet fields and labels.

A :class:`Schema` maps the record fields jetace returns (see :func:`jetace.io.read_jets`)
to branch names of a TTree or RNTuple:

- ``px``, ``py``, ``pz``, ``energy``: jagged constituent momenta in GeV (required),
- ``extras``: optional jagged per-constituent branches (field name -> branch name), read
  when present, e.g. ``{"pid": "part_pid", "charge": "part_charge"}``,
- ``jet``: flat jet-level branches, either a prefix (every branch starting with it, the
  prefix stripped from the field name) or a mapping field name -> branch name,
- ``labels``: flat one-hot label branches, either a prefix (every branch starting with it)
  or a list of branch names (each required); they keep their full branch name,
- ``format``: the input format of the files (``"root"``, ``"toptagging"``,
  ``"energyflow"``, ``"parquet"``, ...: :data:`jetace.formats.FORMATS`), or None (the
  default) to choose it by file extension; the command line's ``--format``,
- ``weight``: optional flat per-jet weight branch (generator weight, pT reweighting),
  required when set and read as the record field ``weight`` (float64); ``jetace train``
  and ``jetace evaluate`` use it (also set by their ``--weight-branch NAME``).

Two ways to name a schema: the built-in ``"jetclass"`` (:data:`JETCLASS`, the JetClass
layout ``part_*``, ``jet_*``, ``label_*``), or a JSON file for user-defined names, read
with :meth:`Schema.from_json` (the command line's ``--schema FILE.json``)::

    {
      "name": "my-ntuple",
      "px": "pf_px", "py": "pf_py", "pz": "pf_pz", "energy": "pf_e",
      "extras": {"charge": "pf_q"},
      "jet": {"pt": "fj_pt", "eta": "fj_eta", "phi": "fj_phi", "mass": "fj_msd"},
      "labels": ["is_top", "is_qcd"]
    }

Keys left out take the JetClass values (``extras`` defaults to none).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from jetace.errors import InputError

__all__ = ["Schema", "JETCLASS", "SCHEMAS", "resolve_schema", "with_weight", "with_format",
           "VECTOR_COORDINATES"]

#: Field names the ``vector`` package reads as coordinates; extras may not use them.
VECTOR_COORDINATES = frozenset(
    "x y z t px py pz E e energy mass m M tau pt rho eta phi theta rapidity "
    "Et et Mt mt pT ptau".split())


@dataclass(frozen=True)
class Schema:
    """Mapping from jetace record fields to ROOT branch names (see the module docstring)."""

    px: str = "part_px"
    py: str = "part_py"
    pz: str = "part_pz"
    energy: str = "part_energy"
    extras: Mapping[str, str] = field(default_factory=dict)
    jet: str | Mapping[str, str] = "jet_"
    labels: str | Sequence[str] = "label_"
    name: str = "custom"
    weight: str | None = None
    format: str | None = None

    def __post_init__(self) -> None:
        where = f"schema {self.name!r}"
        for key in ("px", "py", "pz", "energy", "name"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise InputError(f"{where}: {key!r} must be a non-empty branch name string")
        if not isinstance(self.extras, Mapping):
            raise InputError(f"{where}: 'extras' must map field names to branch names")
        bad = sorted(set(self.extras) & VECTOR_COORDINATES)
        if bad:
            raise InputError(f"{where}: extra constituent field(s) {bad} clash with the "
                             "vector coordinate names; choose other field names")
        if self.weight is not None and (not isinstance(self.weight, str) or not self.weight):
            raise InputError(f"{where}: 'weight' must be a branch name or null")
        if self.format is not None:
            from jetace.formats import format_of

            format_of("", self.format)  # raises for an unknown format, naming the nearest
        if not isinstance(self.jet, (str, Mapping)):
            raise InputError(f"{where}: 'jet' must be a branch-name prefix or a mapping")
        if not isinstance(self.labels, str) and not (
                isinstance(self.labels, Sequence) and all(isinstance(s, str) for s in self.labels)):
            raise InputError(f"{where}: 'labels' must be a branch-name prefix or a list of names")
        # freeze the containers so a schema is a value
        object.__setattr__(self, "extras", dict(self.extras))
        if isinstance(self.jet, Mapping):
            object.__setattr__(self, "jet", dict(self.jet))
        if not isinstance(self.labels, str):
            object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def momenta(self) -> dict[str, str]:
        """The four required constituent branches: field -> branch, in (px, py, pz, energy)."""
        return {"px": self.px, "py": self.py, "pz": self.pz, "energy": self.energy}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (inverse of :meth:`from_dict`)."""
        d = asdict(self)
        if not isinstance(self.labels, str):
            d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "schema") -> Schema:
        """Build a schema from a mapping with the keys of the dataclass; unknown keys raise."""
        if not isinstance(d, Mapping):
            raise InputError(f"{source}: a schema must be a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"{source}: unknown schema key(s) {unknown}; "
                             f"known keys: {sorted(known)}")
        return cls(**dict(d))

    @classmethod
    def from_json(cls, path: str | Path) -> Schema:
        """Read a schema from a JSON file (format in the module docstring)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(f"schema file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"schema file {path} is not readable JSON: {exc}") from exc
        d = dict(d) if isinstance(d, Mapping) else d
        if isinstance(d, dict):
            d.setdefault("name", path.stem)
        return cls.from_dict(d, source=f"schema file {path}")

    def to_json(self, path: str | Path) -> None:
        """Write the schema as JSON (readable by :meth:`from_json`)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


#: The JetClass layout: part_px/py/pz/energy (+ part_pid, part_charge), jet_*, label_*.
JETCLASS = Schema(extras={"pid": "part_pid", "charge": "part_charge",
                          "is_charged_hadron": "part_isChargedHadron",
                          "is_neutral_hadron": "part_isNeutralHadron",
                          "is_photon": "part_isPhoton", "is_electron": "part_isElectron",
                          "is_muon": "part_isMuon"}, name="jetclass")

#: Built-in schemas by name.
SCHEMAS: dict[str, Schema] = {"jetclass": JETCLASS}


def resolve_schema(schema: str | Path | Schema | Mapping[str, Any]) -> Schema:
    """A :class:`Schema` from a schema, a built-in name, a JSON file path or a mapping."""
    if isinstance(schema, Schema):
        return schema
    if isinstance(schema, Mapping):
        return Schema.from_dict(schema)
    if isinstance(schema, (str, Path)):
        key = str(schema)
        if key.lower() in SCHEMAS:
            return SCHEMAS[key.lower()]
        if key.endswith(".json") or Path(key).is_file():
            return Schema.from_json(key)
        raise InputError(f"unknown schema {key!r}: use one of {sorted(SCHEMAS)} "
                         "or the path of a JSON schema file")
    raise InputError(f"schema must be a name, a JSON file or a Schema, not {type(schema).__name__}")


def with_weight(schema: str | Path | Schema | Mapping[str, Any], branch: str | None) -> Schema:
    """``schema`` (resolved) with its per-jet weight branch set to ``branch`` (None: as is)."""
    from dataclasses import replace

    resolved = resolve_schema(schema)
    return resolved if branch is None else replace(resolved, weight=branch)


def with_format(schema: str | Path | Schema | Mapping[str, Any], fmt: str | None) -> Any:
    """``schema`` with its input format set to ``fmt`` (None: ``schema`` as given)."""
    from dataclasses import replace

    return schema if fmt is None else replace(resolve_schema(schema), format=fmt)
