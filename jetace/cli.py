"""The ``jetace`` command: thin argument parsing over library functions.

Every sub-command lives in one ``_add_<name>`` function that declares its arguments and
binds a handler; handlers import what they need lazily so ``jetace --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
import threading
import warnings
from collections.abc import Sequence

__all__ = ["main", "build_parser", "tune_malloc"]


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    """Options that choose the feature family (shared by features and train)."""
    from jetace.presets import ANOMALY_SPEC, WEAK_SPEC

    unsup, cwola = (f"{s['order']} and {s['degree']}" for s in (ANOMALY_SPEC, WEAK_SPEC))
    train_bip = (f"train --unsupervised and CWoLa: {cwola}" if unsup == cwola
                 else f"train --unsupervised: {unsup}; CWoLa: {cwola}")
    g = p.add_argument_group("features")
    g.add_argument("--family", default="bip", choices=["bip", "lorentz"],
                   help="feature family (default: bip, the paper's boost-invariant polynomials)")
    g.add_argument("--order", type=int, default=None,
                   help="maximal body order (number of factors in a product); bip default "
                        f"4, with --degree 7 ({train_bip})")
    g.add_argument("--degree", type=int, default=None,
                   help="maximal total polynomial degree of a product")
    g.add_argument("--complete", action="store_true",
                   help="bip: drop duplicated real parts and add imaginary parts")
    g.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="bip: mean of each product and its mirror image (theta -> -theta), "
                        "invariant under reflections too; (4,7): 694 instead of 1473 "
                        "features (default: on for train, off for features)")
    g.add_argument("--irc-safe", action="store_true",
                   help="lorentz: energy-weighted, infrared and collinear safe variant")
    g.add_argument("--lmax", type=int, default=None,
                   help="lorentz: largest spherical-harmonic degree (default: 4; 8 if IRC safe)")
    g.add_argument("--n-radial", type=int, default=None,
                   help="lorentz: number of radial (Chebyshev) functions (default: 6)")
    g.add_argument("--weight", default=None, choices=["log", "none"],
                   help="lorentz: one-particle weight ln(1 + E*/GeV) (log, default) or 1")
    g.add_argument("--max-particles", type=int, default=None,
                   help="constituents kept per jet, highest pT first (default: 128; "
                        f"{ANOMALY_SPEC['max_particles']} for train --unsupervised)")
    g.add_argument("--select", action="append", default=None, metavar="CLAUSE",
                   help="keep only the columns whose metadata pass, e.g. 'nu<=3' or "
                        "'d<=6' (repeatable; see jetace.features.plan.Selection)")
    g.add_argument("--species", default=None,
                   help="species channels from particle identity (part_pid and "
                        "part_charge, or the JetClass flags): 'default' or a comma list of "
                        "charge, charged_hadron, neutral_hadron, photon, electron, muon, "
                        "lepton (see jetace.species)")
    g.add_argument("--channel-mode", default=None, choices=["reduced", "full"],
                   help="with --species: tensor-reduced mixtures (default) or every "
                        "combination of channels")
    g.add_argument("--rank", type=int, default=None,
                   help="with --species and reduced channels: mixtures per body order "
                        "(default: 2)")
    g.add_argument("--species-weight", default=None, choices=["radial", "count"],
                   help="with --species: a species channel weights its constituents by the "
                        "family's radial weight (radial, default) or counts them (count)")


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """Options for reading ROOT files (shared by every command that reads jets)."""
    g = p.add_argument_group("input")
    g.add_argument("--tree", default="tree", help="TTree or RNTuple name (default: tree)")
    g.add_argument("--schema", default="jetclass",
                   help="branch-name schema: 'jetclass' or a JSON file mapping fields to branches")
    g.add_argument("--step-size", default="100 MB",
                   help="jets per chunk, or a size such as '100 MB' (default: 100 MB)")
    g.add_argument("--max-jets", type=int, default=None,
                   help="stop after this many jets per input set")
    g.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--batch-size", type=int, default=4096, help="jets per feature batch")
    g.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="floating type the features are computed in (default: float32; "
                        "predict and evaluate: the model's, as in training); float64 is "
                        "slower and removes float32 rounding noise from small features")
    g.add_argument("--workers", type=int, default=1,
                   help="CPU worker processes reading and computing in parallel, e.g. the "
                        "number of cores (default: 1; results are the same)")
    g.add_argument("--format", default=None,
                   choices=["root", "toptagging", "energyflow", "energyflow-pion",
                            "energyflow-pid", "parquet"],
                   help="input file format (default: by extension: .root, .h5 Top Tagging, "
                        ".npz energyflow, .parquet; see jetace.formats)")
    g.add_argument("--skip-bad-jets", action="store_true",
                   help="leave out jets with NaN, infinite or too large momenta (beyond "
                        "1e15 GeV) or negative energies, and jets whose features or scores "
                        "are not finite; they are counted and listed at the end (default: "
                        "stop at the first, naming its file and entry)")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def _schema(args: argparse.Namespace):
    """--schema with --format applied."""
    from jetace.schema import with_format

    return with_format(args.schema, getattr(args, "format", None))


#: bad jets listed one by one at the end of a run with --skip-bad-jets
_LISTED_BAD_JETS = 100


def _bad_jets(args: argparse.Namespace) -> list | None:
    """The run's list of left-out jets (with --skip-bad-jets), else None."""
    if not getattr(args, "skip_bad_jets", False):
        return None
    if getattr(args, "_bad_jets", None) is None:
        args._bad_jets = []
    return args._bad_jets


def _report_bad_jets(args: argparse.Namespace) -> None:
    bad = getattr(args, "_bad_jets", None)
    if not bad:
        return
    print(f"jetace {args.command}: warning: left out {len(bad)} bad jet(s) "
          "(--skip-bad-jets):", file=sys.stderr)
    for path, entry, reason in bad[:_LISTED_BAD_JETS]:
        print(f"  {path}: jet entry {entry}: {reason}", file=sys.stderr)
    if len(bad) > _LISTED_BAD_JETS:
        print(f"  ... and {len(bad) - _LISTED_BAD_JETS} more", file=sys.stderr)


def feature_spec_from_args(args: argparse.Namespace, mirror: bool = False) -> dict:
    """The feature specification (see :func:`jetace.features.features_from_spec`);
    ``mirror``: the bip default of ``--mirror`` when neither it nor ``--complete`` is given."""
    from jetace.errors import InputError

    spec: dict = {"family": args.family,
                  "max_particles": 128 if args.max_particles is None else args.max_particles}
    if args.order is not None:
        spec["order"] = args.order
    if args.degree is not None:
        spec["degree"] = args.degree
    if args.family == "bip" and args.complete:
        if args.mirror:
            raise InputError("--complete and --mirror cannot be combined")
        spec["complete"] = True
    elif args.family == "bip" and (mirror if args.mirror is None else args.mirror):
        spec["mirror"] = True
    if args.family != "bip" and args.mirror:
        raise InputError("--mirror applies to the bip family only")
    if args.family == "lorentz":
        if args.irc_safe:
            spec["irc_safe"] = True
        for key in ("lmax", "n_radial", "weight"):
            if getattr(args, key) is not None:
                spec[key] = getattr(args, key)
    if getattr(args, "select", None):
        spec["select"] = list(args.select)
    if getattr(args, "species", None):
        spec["species"] = args.species
        for key in ("channel_mode", "rank", "species_weight"):
            if getattr(args, key, None) is not None:
                spec[key] = getattr(args, key)
    elif any(getattr(args, k, None) for k in ("channel_mode", "rank", "species_weight")):
        raise InputError("--channel-mode, --rank and --species-weight apply with --species only")
    return spec


def _add_features(sub) -> None:
    p = sub.add_parser("features", help="compute ACE features of the jets in ROOT files",
                       description="Compute features chunk by chunk and write them, with the "
                                   "jet-level fields and labels, to Parquet (.parquet) or ROOT "
                                   "(.root).")
    p.add_argument("files", nargs="+", help="ROOT files or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output file (.parquet or .root)")
    add_feature_arguments(p)
    add_input_arguments(p)
    p.add_argument("--skip-bad", action="store_true",
                   help="skip input files with a missing tree or bad branches (listed at the "
                        "end) instead of stopping before any output is written")
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="compute on a dask cluster: local:N (N worker processes here) or "
                        "tcp://HOST:PORT of a running scheduler (needs jetace[dask]); the "
                        "output is the same as without --dask")

    def run(args):
        from jetace.extract import write_features

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            n = write_features(args.files, args.output, feature_spec_from_args(args),
                               **_options(args, dask=args.dask))
        print(f"wrote features of {n} jets to {args.output}")
        for w in caught:
            print(f"jetace features: warning: {w.message}", file=sys.stderr)

    p.set_defaults(func=run, paths=lambda a: ([a.output], [*a.files, a.schema]))


def _add_generate(sub) -> None:
    p = sub.add_parser(
        "generate", help="generate jets with Pythia 8 + FastJet (needs jetace[generate])",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate pp events with Pythia 8, cluster anti-kT jets of all visible "
                    "final-state particles with FastJet, and write the two leading jets of each "
                    "event that pass the cuts in the JetClass layout (TTree 'tree').\n\n"
                    "processes (JetClass label names; a jet of a decay is kept only when the\n"
                    "particle and all its visible decay products lie within Delta R < R of\n"
                    "the jet axis):\n"
                    "  top   t tbar, both W -> q q'                  label_Tbqq\n"
                    "  qcd   all hard QCD 2 -> 2 (no matching)        label_QCD\n"
                    "  w     W + jet, W -> q q'                       label_Wqq\n"
                    "  z     Z + jet, Z -> q qbar                     label_Zqq\n"
                    "  hbb   H + jet, H -> b bbar                     label_Hbb\n"
                    "  hcc   H + jet, H -> c cbar                     label_Hcc\n"
                    "  hgg   H + jet, H -> g g                        label_Hgg\n"
                    "  h4q   H + jet, H -> W W* / Z Z* -> 4 quarks    label_H4q\n"
                    "  hqql  H + jet, H -> W W* -> l nu q q'          label_Hqql\n"
                    "  tbl   t tbar, one t -> b l nu                  label_Tbl\n"
                    "  (defaults: R = 0.8, 550-650 GeV, |eta| < 2, MPI off)\n"
                    "quark/gluon benchmark (energyflow's dataset; jet matched to the hard\n"
                    "parton within R):\n"
                    "  zq    Z(-> nu nu) + u/d/s quark (q g -> Z q)   label_q\n"
                    "  zg    Z(-> nu nu) + gluon (q qbar -> Z g)      label_g\n"
                    "  (defaults: R = 0.4, 500-550 GeV, |y| < 1.7, MPI on)\n\n"
                    "The same --seed, --workers and -n give the same jets: worker k runs its "
                    "own Pythia seeded from (seed, k) and the workers' jets are written in "
                    "worker order.")
    p.add_argument("process", help="top, qcd, w, z, hbb, hcc, hgg, h4q, hqql, tbl, zq or zg")
    p.add_argument("-n", "--n-jets", type=int, required=True, help="number of jets to write")
    p.add_argument("-o", "--output", required=True, help="output ROOT file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--sqrts", type=float, default=14000.0,
                   help="pp centre-of-mass energy in GeV (default: 14000)")
    p.add_argument("--radius", type=float, default=None,
                   help="anti-kT jet radius (default: the process's, 0.8 or 0.4)")
    p.add_argument("--pt-min", type=float, default=None,
                   help="minimal jet pT, GeV (default: the process's, 550 or 500)")
    p.add_argument("--pt-max", type=float, default=None,
                   help="maximal jet pT, GeV (default: the process's, 650 or 550)")
    p.add_argument("--eta-max", type=float, default=None,
                   help="maximal jet |eta| (default: the process's, 2 or none; inf: no cut)")
    p.add_argument("--y-max", type=float, default=None,
                   help="maximal jet rapidity |y| (default: the process's, none or 1.7; "
                        "inf: no cut)")
    p.add_argument("--pthat", type=float, nargs=2, metavar=("MIN", "MAX"), default=None,
                   help="Pythia pTHat window in GeV (default: the pT window widened on each "
                        "side by 0.7 of its width, at least 10%% of pt-min: 480 720 for "
                        "550-650)")
    p.add_argument("--mpi", action=argparse.BooleanOptionalAction, default=None,
                   help="multi-parton interactions (default: the process's, off or on)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--split", action="store_true",
                   help="with --workers W: write one file per worker, OUTPUT_<k>.root")
    p.add_argument("--rntuple", action="store_true", help="write an RNTuple instead of a TTree")
    p.add_argument("--compression", default="zlib:1",
                   help="zlib:1 (default), lzma:9, lz4, zstd:5 ... or none")
    p.add_argument("--pythia", action="append", default=[], metavar="SETTING",
                   help="extra Pythia setting, e.g. 'Tune:pp = 14' (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    def run(args):
        from jetace.generate import generate

        s = generate(args.process, args.n_jets, args.output, seed=args.seed, sqrts=args.sqrts,
                     radius=args.radius, pt_min=args.pt_min, pt_max=args.pt_max,
                     eta_max=args.eta_max, y_max=args.y_max, mpi=args.mpi,
                     workers=args.workers,
                     rntuple=args.rntuple, split=args.split, compression=args.compression,
                     pthat=tuple(args.pthat) if args.pthat else None,
                     pythia_settings=args.pythia, progress=not args.quiet)
        files = ", ".join(str(f) for f in s.files)
        print(f"wrote {s.n_jets} {args.process} jets from {s.n_events} events to {files} "
              f"in {s.seconds:.1f} s ({s.jets_per_second_per_worker:.1f} jets/s per worker)")

    p.set_defaults(func=run, paths=_generate_paths)


#: Pythia settings whose value is a file that Pythia reads
_PYTHIA_FILE_SETTINGS = ("beams:lhef", "beams:lhefheader", "slha:file")


def _generate_paths(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """(outputs, inputs) of ``generate``: the output (one per worker with --split) and
    the files named by --pythia settings."""
    from pathlib import Path

    from jetace.generate.parallel import worker_paths

    out = Path(args.output)
    outputs = worker_paths(out, args.workers) if args.split and args.workers > 1 else [out]
    inputs = []
    for setting in args.pythia:
        key, _, value = setting.partition("=")
        if key.strip().lower() in _PYTHIA_FILE_SETTINGS and value.strip():
            inputs.append(value.strip())
    return [str(o) for o in outputs], inputs


# -- supervised taggers: train, evaluate, predict, export-onnx -------------------------


def _options(args: argparse.Namespace, **run) -> dict:
    """The reading and run options of a command and its list of left-out jets, as the
    keywords of the library functions (``run``: run options of this command)."""
    return {"read": _read_options(args), "run": _run_options(args, **run),
            "bad_jets": _bad_jets(args)}


def _dtype(args: argparse.Namespace):
    """--dtype as a torch dtype, or None (the command's default)."""
    if getattr(args, "dtype", None) is None:
        return None
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[args.dtype]


def _strength(text: str) -> str:
    """--C: 'auto' or a positive number (kept as text; converted where used)."""
    if text != "auto":
        try:
            if not float(text) > 0:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected 'auto' or a positive number, got "
                                             f"{text!r}") from None
    return text


def _widths(text: str) -> str:
    """--hidden: comma-separated positive integers (kept as text)."""
    try:
        if not all(int(w) > 0 for w in text.split(",")):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such "
                                         f"as 64,32, got {text!r}") from None
    return text


def _add_train(sub) -> None:
    from jetace import presets

    sup, anomaly = presets.SUPERVISED, presets.ANOMALY
    p = sub.add_parser(
        "train", help="train a tagger (supervised, unsupervised or CWoLa) on ACE features",
        description="Stream the jets of ROOT files through the feature module, train a tagger "
                    "on the feature matrix and write one model file (features + preprocessing "
                    "+ classifier). Binary: --signal/--background. Multi-class: --inputs and "
                    "--labels, one class per label branch. A seeded validation split is held "
                    "out and its AUC (or accuracy) printed. Unsupervised: --unsupervised METHOD "
                    "--background FILES (anomaly score fitted on background jets only; for "
                    "'cluster' the files, --inputs or --background, are the unlabelled "
                    "sample). Weakly supervised (CWoLa): --mixture-a FILES --mixture-b FILES, "
                    "A being the mixture richer in signal. Every model scores larger = more "
                    "signal-like (anomalous), for 'jetace evaluate' and 'jetace predict'.")
    p.add_argument("--signal", nargs="+", help="ROOT files (or patterns) of signal jets")
    p.add_argument("--background", nargs="+", help="ROOT files (or patterns) of background jets")
    p.add_argument("--inputs", nargs="+", help="multi-class: ROOT files with label_* branches")
    p.add_argument("--labels", default=None,
                   help="multi-class: comma-separated label branches, e.g. label_Tbqq,label_QCD")
    p.add_argument("--unsupervised", default=None, metavar="METHOD", choices=anomaly.models,
                   help="train without labels: gaussian, gmm, autoencoder, ensemble (anomaly "
                        "scores fitted on --background) or cluster (clusters of --inputs)")
    p.add_argument("--mixture-a", nargs="+", help="CWoLa: ROOT files of the signal-richer mixture")
    p.add_argument("--mixture-b", nargs="+", help="CWoLa: ROOT files of the other mixture")
    p.add_argument("-o", "--output", required=True, help="model file to write")
    p.add_argument("--model", default=sup.model, choices=sup.models,
                   help=f"linear: logistic regression; mlp: small neural network, by "
                        f"default the widest one hidden layer within 10,000 trainable "
                        f"parameters (also the classifier of CWoLa; default: {sup.model})")
    linear_method = presets.tagger_params("supervised", "linear")["method"]
    p.add_argument("--method", default=linear_method, choices=["logistic", "lda"],
                   help=f"linear model: logistic regression or shrinkage LDA (default: "
                        f"{linear_method})")
    p.add_argument("--C", default=None, type=_strength,
                   help="linear model: inverse L2 strength, or 'auto' for a validation scan")
    p.add_argument("--hidden", default=None, type=_widths,
                   help="mlp, autoencoder: comma-separated hidden layer widths (e.g. 64,32)")
    p.add_argument("--ensemble", action="store_true",
                   help="mlp: the earlier large default instead, three (128, 64) networks "
                        "(292,538 parameters on the 694 default features)")
    u = p.add_argument_group("unsupervised")
    u.add_argument("--n-components", default=None,
                   help="principal components kept: an integer, or a variance fraction in "
                        "(0, 1), or 'all' (default: the method's)")
    u.add_argument("--n-mix", type=int, default=None, help="gmm: Gaussians in the mixture")
    u.add_argument("--n-clusters", type=int, default=None, help="cluster: number of clusters")
    u.add_argument("--cluster-method", default=None, choices=["gmm", "kmeans"],
                   help="cluster: Gaussian mixture (default) or k-means")
    u.add_argument("--rule", default=None, choices=["smallest", "farthest"],
                   help="cluster: the signal-like cluster is the smallest (default) or the "
                        "farthest from the sample mean")
    u.add_argument("--latent", type=int, default=None, help="autoencoder: latent width")
    u.add_argument("--max-epochs", type=int, default=None, help="autoencoder: epoch limit")
    p.add_argument("--transform", default=None, choices=["standard", "signed_log"],
                   help="input scaling of the features (default: the tagger's)")
    p.add_argument("--seed", type=int, default=0, help="seed of splits and initialisation")
    _add_weight_branch(p, "the fit, its validation metrics and the refit are weighted")
    p.add_argument("--val-fraction", type=float, default=None,
                   help="fraction of jets held out for the reported validation metrics; the "
                        f"saved model is then refitted on all jets (default: {sup.val_fraction}"
                        f"; {anomaly.val_fraction:g} for --unsupervised)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip input files with a missing tree or bad branches (with a warning) "
                        "instead of stopping")
    add_feature_arguments(p)
    add_input_arguments(p)

    def unsupervised_params(args) -> dict:
        params: dict = {}
        if args.n_components is not None:
            v = args.n_components
            try:
                params["n_components"] = (None if v == "all" else float(v) if "." in v
                                          else int(v))
            except ValueError:
                from jetace.errors import InputError

                raise InputError(f"--n-components takes an integer, a fraction in (0, 1) or "
                                 f"'all', got {v!r}") from None
        if args.transform:
            params["scaling"] = args.transform
        for opt, key in (("n_mix", "n_mix"), ("n_clusters", "n_clusters"), ("rule", "rule"),
                         ("cluster_method", "method"), ("latent", "latent"),
                         ("max_epochs", "max_epochs")):
            if getattr(args, opt) is not None:
                params[key] = getattr(args, opt)
        if args.hidden:
            params["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        if args.unsupervised == "autoencoder" and not args.quiet:
            params["progress"] = True
        return params

    def run_weak(args, common: dict):
        from jetace.errors import InputError
        from jetace.training import train_cwola, train_unsupervised

        if args.signal or args.labels:
            raise InputError("--signal/--labels are for supervised training; --unsupervised "
                             "takes --background (or --inputs), CWoLa takes --mixture-a/-b")
        if args.unsupervised:
            if args.mixture_a or args.mixture_b:
                raise InputError("give either --unsupervised or --mixture-a/--mixture-b")
            return train_unsupervised(background=args.background, inputs=args.inputs,
                                      method=args.unsupervised,
                                      tagger_params=unsupervised_params(args), **common)
        if not (args.mixture_a and args.mixture_b) or args.background or args.inputs:
            raise InputError("CWoLa training takes --mixture-a FILES and --mixture-b FILES "
                             "(and no --background/--inputs)")
        return train_cwola(mixture_a=args.mixture_a, mixture_b=args.mixture_b,
                           model=args.model, tagger_params=supervised_params(args), **common)

    def supervised_params(args) -> dict:
        params: dict = {"seed": args.seed}
        if args.transform:
            params["scaling"] = args.transform
        if args.model == "linear":
            params["method"] = args.method
            if args.C is not None:
                params["C"] = args.C if args.C == "auto" else float(args.C)
        else:
            if args.ensemble:
                from jetace.taggers.mlp import ENSEMBLE

                params.update(ENSEMBLE)
            if args.hidden:
                params["hidden"] = tuple(int(h) for h in args.hidden.split(","))
        return params

    def run(args):
        from jetace.training import train_model, training_summary

        weak = bool(args.unsupervised or args.mixture_a or args.mixture_b)
        mode = "anomaly" if args.unsupervised else "weak" if weak else "supervised"
        preset = presets.preset(mode)
        val_fraction = preset.val_fraction if args.val_fraction is None else args.val_fraction
        spec = feature_spec_from_args(args, mirror=bool(preset.spec.get("mirror")))
        if args.max_particles is None:  # the mode's, not the features command's default
            del spec["max_particles"]
        common = dict(spec=presets.complete_spec(mode, spec), val_fraction=val_fraction,
                      seed=args.seed, weight_branch=args.weight_branch, **_options(args))
        if weak:
            model, report = run_weak(args, common)
        else:
            labels = args.labels.split(",") if args.labels else None
            model, report = train_model(signal=args.signal, background=args.background,
                                        inputs=args.inputs, labels=labels, model=args.model,
                                        tagger_params=supervised_params(args), **common)
        model.save(args.output)
        print("\n".join(training_summary(model, report)))
        print(f"wrote {args.output}")

    p.set_defaults(func=run, paths=lambda a: ([a.output], [
        *(a.signal or []), *(a.background or []), *(a.inputs or []),
        *(a.mixture_a or []), *(a.mixture_b or []), a.schema]))


def _add_weight_branch(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--weight-branch", default=None, metavar="NAME",
                   help=f"flat per-jet weight branch (generator weight, pT reweighting; "
                        f"also the schema's 'weight'): {what}")


def _add_skip_bad(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-bad", action="store_true",
                   help="skip input files with a missing tree or bad branches (listed on "
                        "stderr) instead of stopping before any jet is scored")


def _read_options(args: argparse.Namespace):
    """The reading options of a command's input arguments (--weight-branch included)."""
    from jetace.run.options import ReadOptions
    from jetace.schema import with_weight

    return ReadOptions(tree=args.tree, schema=with_weight(_schema(args),
                                                          getattr(args, "weight_branch", None)),
                       step_size=args.step_size, max_jets=args.max_jets,
                       skip_bad=getattr(args, "skip_bad", False))


def _run_options(args: argparse.Namespace, **extra):
    """The run options of a command's arguments (``extra``: command-specific fields)."""
    from jetace.run.options import RunOptions

    return RunOptions(**{"device": args.device, "batch_size": args.batch_size,
                         "dtype": _dtype(args), "workers": getattr(args, "workers", 1),
                         "progress": not args.quiet, **extra})


def _readable(paths: list[str], args: argparse.Namespace, command: str):
    """The input files checked once (:class:`jetace.io.JetFiles`, passed down to the
    library function); with --skip-bad those that fail the checks are left out, each
    reported on stderr (an error if none is left)."""
    from jetace.io import JetFiles

    read = _read_options(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, once per file
        files = JetFiles(paths, read.tree, read.schema, skip_bad=read.skip_bad,
                         format=read.format)
    for path, reason in files.skipped:
        print(f"jetace {command}: warning: skipping bad input file {path}: {reason}",
              file=sys.stderr)
    return files


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate", help="ROC AUC, accuracy and background rejection of a model",
        description="Score signal and background jets with a model file and report accuracy "
                    "(cut at probability 0.5; for anomaly, clustering and CWoLa models, whose "
                    "scores only rank jets, at the score above which as many jets lie as "
                    "there are signal jets: accuracy_threshold), ROC AUC and background "
                    "rejection 1/eps_B at signal efficiency 0.3 and 0.5.")
    p.add_argument("model", help="model file written by 'jetace train'")
    p.add_argument("--signal", nargs="+", help="ROOT files of signal jets")
    p.add_argument("--background", nargs="+", help="ROOT files of background jets")
    p.add_argument("--inputs", nargs="+",
                   help="instead of --signal/--background: files holding both classes "
                        "(e.g. the Top Tagging test.h5), with --signal-label")
    p.add_argument("--signal-label", default=None, metavar="FIELD",
                   help="with --inputs: the label field true for signal jets "
                        "(e.g. label_Tbqq)")
    p.add_argument("--signal-class", default=None,
                   help="multi-class model: the class that is signal (default: the first)")
    p.add_argument("--json", action="store_true",
                   help="print one strict JSON object line; a rejection that is infinite "
                        "(no background jet passes the cut) is null")
    p.add_argument("--plot", default=None, help="write the ROC curve to this image (e.g. roc.png)")
    _add_weight_branch(p, "weighted AUC, accuracy and rejection (negative weights accepted)")
    _add_skip_bad(p)
    add_input_arguments(p)

    def run(args):
        import json
        import math

        from jetace.cost import model_cost_fields
        from jetace.metrics import plot_roc
        from jetace.model_file import load_model
        from jetace.scoring import evaluate_files

        model = load_model(args.model)
        files = {k: None if getattr(args, k) is None else _readable(getattr(args, k), args,
                                                                     "evaluate")
                 for k in ("signal", "background", "inputs")}
        metrics, scores, labels = evaluate_files(
            model, files["signal"], files["background"], inputs=files["inputs"],
            signal_label=args.signal_label, signal_class=args.signal_class,
            weight_branch=args.weight_branch,
            **_options(args, progress=not (args.json or args.quiet)))
        if args.plot:
            plot_roc({model.metadata.get("model", "model"): (scores, labels)}, args.plot)
        metrics.update(model_cost_fields(model))
        if args.json:
            strict = {k: None if isinstance(v, float) and not math.isfinite(v) else v
                      for k, v in metrics.items()}
            print(json.dumps(strict, allow_nan=False))
            return
        for key, value in metrics.items():
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"{key:>18s}  {shown}")
        if args.plot:
            print(f"wrote {args.plot}")

    p.set_defaults(func=run, paths=lambda a: ([a.plot], [
        a.model, *(a.signal or ()), *(a.background or ()), *(a.inputs or ()), a.schema]))


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="score every jet of ROOT files with a model",
        description="Write one row per input jet, in input order: the jet-level fields and "
                    "labels, and 'score' (binary model: the signal logit, larger = more "
                    "signal-like) or 'score_<class>' per class (multi-class: probabilities).")
    p.add_argument("model", help="model file written by 'jetace train'")
    p.add_argument("files", nargs="+", help="ROOT files or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output file (.parquet or .root)")
    _add_skip_bad(p)
    add_input_arguments(p)

    def run(args):
        from jetace.model_file import load_model
        from jetace.scoring import predict_to_file

        n = predict_to_file(load_model(args.model), _readable(args.files, args, "predict"),
                            args.output, **_options(args))
        print(f"wrote scores of {n} jets to {args.output}")

    p.set_defaults(func=run, paths=lambda a: ([a.output], [a.model, *a.files, a.schema]))


def _add_export_onnx(sub) -> None:
    p = sub.add_parser(
        "export-onnx", help="export a model (features + classifier) as one ONNX graph",
        description="Inputs p4 (batch, particles, 4) float32 as (E, px, py, pz) in GeV and mask "
                    "(batch, particles) bool; output 'score' as 'jetace predict' before any "
                    "softmax. Needs the 'onnx' extra.")
    p.add_argument("model", help="model file written by 'jetace train'")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")

    def run(args):
        from jetace.model_file import load_model

        load_model(args.model).to_onnx(args.output)
        print(f"wrote {args.output}")

    p.set_defaults(func=run, paths=lambda a: ([a.output], [a.model]))


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo", help="the main job: features, linear and MLP taggers on the built-in sample",
        description="Compute BIP features of the built-in sample (4,000 top and 4,000 QCD jets "
                    "from jetace generate, shipped with jetace), train a linear tagger and a "
                    "small MLP on a seeded split, evaluate on the held-out jets, print a table "
                    "and write roc.png, summary.json and the linear model file.")
    p.add_argument("-o", "--output", default="jetace-demo-output",
                   help="output folder (default: jetace-demo-output)")
    p.add_argument("--order", type=int, default=4, help="BIP body order (default: 4)")
    p.add_argument("--degree", type=int, default=7, help="BIP degree (default: 7)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True,
                   help="mirror-symmetrised BIP features, as train uses (default: on)")
    p.add_argument("--test-fraction", type=float, default=0.3,
                   help="held-out fraction of the jets (default: 0.3)")
    p.add_argument("--max-jets", type=int, default=None,
                   help="jets read per class (default: all 4,000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the MLP")
    p.add_argument("--device", default="auto", help="torch device (default: auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    def run(args):
        from jetace.demo import run_demo

        run_demo(args.output, order=args.order, degree=args.degree, mirror=args.mirror,
                 test_fraction=args.test_fraction, max_jets=args.max_jets, seed=args.seed,
                 device=args.device, progress=not args.quiet)

    p.set_defaults(func=run)


_COMMANDS = [_add_features, _add_generate]
_COMMANDS += [_add_train, _add_evaluate, _add_predict, _add_export_onnx, _add_demo]


def _add_mix(sub) -> None:
    p = sub.add_parser(
        "mix", help="write a mixed sample of known signal fraction from labelled files",
        description="Draw N jets, a fraction F of them from the signal files and the rest from "
                    "the background files (seeded, without replacement), shuffle them and "
                    "write a JetClass-layout ROOT file. Labels are kept and a branch "
                    "mix_is_signal records the truth, so weakly supervised taggers trained on "
                    "two such mixtures (CWoLa) can be evaluated.")
    p.add_argument("signal", nargs="+", help="ROOT files (or patterns) of signal jets")
    p.add_argument("--background", nargs="+", required=True,
                   help="ROOT files (or patterns) of background jets")
    p.add_argument("--fraction", type=float, required=True, help="signal fraction in [0, 1]")
    p.add_argument("-n", "--num-jets", type=int, required=True, help="jets in the mixture")
    p.add_argument("-o", "--output", required=True, help="output ROOT file")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw and the shuffle")
    p.add_argument("--tree", default="tree", help="TTree or RNTuple name (default: tree)")
    p.add_argument("--schema", default="jetclass",
                   help="branch-name schema: 'jetclass' or a JSON file mapping fields to branches")
    p.add_argument("--max-jets", type=int, default=None,
                   help="read at most this many jets per input set")

    def run(args):
        from jetace.mix import mix_files

        r = mix_files(args.signal, args.background, args.output, args.fraction, args.num_jets,
                      seed=args.seed, tree=args.tree, schema=args.schema, max_jets=args.max_jets)
        print(f"wrote {r['n_jets']} jets ({r['n_signal']} signal, {r['n_background']} "
              f"background) to {args.output}")

    p.set_defaults(func=run, paths=lambda a: ([a.output], [*a.signal, *a.background,
                                                           a.schema]))


_COMMANDS.append(_add_mix)


def build_parser() -> argparse.ArgumentParser:
    from jetace import __version__

    parser = argparse.ArgumentParser(
        prog="jetace", description="ACE features and taggers for jets in ROOT files.")
    parser.add_argument("--version", action="version", version=f"jetace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


#: glibc's mallopt parameters M_ARENA_MAX and M_MMAP_THRESHOLD
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3


def tune_malloc(arenas: int = 2, mmap_threshold: int = 128 * 1024) -> bool:
    """Make glibc's malloc return freed memory to the system in a long streaming run.

    Two settings, each left alone where its environment variable (``MALLOC_ARENA_MAX``,
    ``MALLOC_MMAP_THRESHOLD_``) is set: at most ``arenas`` heaps (by default every
    thread that allocates, reading, decompression, read-ahead, gets one, and memory freed
    in many arenas is reused badly), and a fixed ``mmap_threshold`` in bytes (glibc's
    initial value; by default it rises to 32 MiB after the first large block is freed,
    after which the feature blocks come from the heap, which fragments and does not
    shrink). With both, the peak RSS of ``jetace features`` no longer grows with the
    number of batches (benchmarks/streaming_memory.py ``--batch-sweep``), at the same
    speed. Does nothing where malloc is not glibc's; returns whether both were set.
    """
    import ctypes
    import os

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = []
    for variable, param, value in (("MALLOC_ARENA_MAX", _M_ARENA_MAX, arenas),
                                   ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD,
                                    mmap_threshold)):
        done.append(variable not in os.environ and bool(mallopt(param, int(value))))
    return all(done)


def main(argv: Sequence[str] | None = None) -> int:
    tune_malloc()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    import errno
    import signal

    from jetace.errors import JetaceError

    # SIGTERM ends the run like Ctrl-C: cleanup code runs (temporary outputs removed)
    previous = signal.signal(signal.SIGTERM, _terminate) \
        if threading.current_thread() is threading.main_thread() else None
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"jetace {args.command}: warning: {message}", file=sys.stderr)

    warnings.showwarning = show  # one line per warning, as the errors
    try:
        paths = getattr(args, "paths", None)
        if paths is not None:  # before any work: an output never replaces an input
            from jetace.outputs import check_outputs

            check_outputs(*paths(args))
        code = args.func(args) or 0
        _report_bad_jets(args)
        return code
    except JetaceError as exc:
        print(f"jetace {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # disk full, permission denied, I/O errors
        what = {errno.ENOSPC: "no space left on device (the disk is full)",
                errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
                errno.EROFS: "read-only file system"}.get(exc.errno, exc.strerror or str(exc))
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"jetace {args.command}: error: {where}{what}; no output was left behind",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"jetace {args.command}: interrupted; no output was left behind",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
