"""The ``jetace`` command: thin argument parsing over library functions.

Every sub-command lives in one ``_add_<name>`` function that declares its arguments and
binds a handler; handlers import what they need lazily so ``jetace --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]


def add_feature_arguments(p: argparse.ArgumentParser) -> None:
    """Options that choose the feature family (shared by features and train)."""
    g = p.add_argument_group("features")
    g.add_argument("--family", default="bip", choices=["bip", "lorentz"],
                   help="feature family (default: bip, the paper's boost-invariant polynomials)")
    g.add_argument("--order", type=int, default=None,
                   help="maximal body order (number of factors in a product)")
    g.add_argument("--degree", type=int, default=None,
                   help="maximal total polynomial degree of a product")
    g.add_argument("--complete", action="store_true",
                   help="bip: drop duplicated real parts and add imaginary parts")
    g.add_argument("--irc-safe", action="store_true",
                   help="lorentz: energy-weighted, infrared and collinear safe variant")
    g.add_argument("--max-particles", type=int, default=128,
                   help="constituents kept per jet, highest pT first (default: 128)")


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """Options for reading ROOT files (shared by every command that reads jets)."""
    g = p.add_argument_group("input")
    g.add_argument("--tree", default="tree", help="TTree or RNTuple name (default: tree)")
    g.add_argument("--schema", default="jetclass",
                   help="branch-name schema: 'jetclass' or a JSON file mapping fields to branches")
    g.add_argument("--step-size", default="100 MB",
                   help="jets per chunk, or a size such as '100 MB' (default: 100 MB)")
    g.add_argument("--max-jets", type=int, default=None, help="stop after this many jets per input set")
    g.add_argument("--device", default="auto", help="torch device: auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--batch-size", type=int, default=4096, help="jets per feature batch")


def feature_spec_from_args(args: argparse.Namespace) -> dict:
    """The feature specification (see :func:`jetace.features.features_from_spec`)."""
    spec: dict = {"family": args.family, "max_particles": args.max_particles}
    if args.order is not None:
        spec["order"] = args.order
    if args.degree is not None:
        spec["degree"] = args.degree
    if args.family == "bip" and args.complete:
        spec["complete"] = True
    if args.family == "lorentz" and args.irc_safe:
        spec["irc_safe"] = True
    return spec


def _add_features(sub) -> None:
    p = sub.add_parser("features", help="compute ACE features of the jets in ROOT files",
                       description="Compute features chunk by chunk and write them, with the "
                                   "jet-level fields and labels, to Parquet (.parquet) or ROOT (.root).")
    p.add_argument("files", nargs="+", help="ROOT files or glob patterns")
    p.add_argument("-o", "--output", required=True, help="output file (.parquet or .root)")
    add_feature_arguments(p)
    add_input_arguments(p)

    def run(args):
        from jetace.extract import write_features

        n = write_features(args.files, args.output, feature_spec_from_args(args), tree=args.tree,
                           schema=args.schema, step_size=args.step_size, max_jets=args.max_jets,
                           device=args.device, batch_size=args.batch_size)
        print(f"wrote features of {n} jets to {args.output}")

    p.set_defaults(func=run)


_COMMANDS = [_add_features]


def build_parser() -> argparse.ArgumentParser:
    from jetace import __version__

    parser = argparse.ArgumentParser(
        prog="jetace", description="ACE features and taggers for jets in ROOT files.")
    parser.add_argument("--version", action="version", version=f"jetace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from jetace.errors import JetaceError

    try:
        return args.func(args) or 0
    except JetaceError as exc:
        print(f"jetace {args.command}: error: {exc}", file=sys.stderr)
        return 1
