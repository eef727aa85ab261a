"""Checks on output paths made before any work: an output never replaces an input, and
its directory exists and is writable.

Every ``jetace`` command calls :func:`check_outputs` with the files it reads (ROOT
inputs, model files, files named in generator settings) and the files it writes, so
``jetace features a.root -o a.root`` stops at once instead of replacing its input with
the feature table. Two paths are the same file when they resolve to the same path
after following symbolic links, or, for existing files, when the system says they are
the same file (hard links, bind mounts).

Outputs are written under a temporary name in the output's directory, ``.<output
name>.<pid>.<random>.tmp``, and renamed to the output only when complete
(:func:`atomic_output`); on an error, Ctrl-C or SIGTERM (the command line turns it into
an interrupt) the temporary file is deleted. A run killed outright (SIGKILL, power loss)
cannot clean up: the next run writing the same output deletes the temporary files of
that output whose process no longer exists (:func:`remove_stale_temporaries`); they are
hidden files beside the output and may also be deleted by hand.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from jetace.errors import JetaceError

__all__ = ["check_outputs", "check_output_of", "same_file", "check_writable_directory",
           "temporary_name", "remove_stale_temporaries", "atomic_output"]

_GLOB_CHARS = ("*", "?", "[")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (links resolved; both may be absent)."""
    a, b = os.fspath(a), os.fspath(b)
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _expanded(paths: Iterable[str | os.PathLike]) -> list[str]:
    """Paths with glob patterns replaced by their matches (a pattern matching nothing,
    and a missing file, are left to the reading code to report)."""
    out: list[str] = []
    for item in paths:
        text = os.path.expanduser(os.fspath(item))
        if any(c in text for c in _GLOB_CHARS) and not os.path.exists(text):
            out.extend(sorted(glob.glob(text, recursive=True)))
        else:
            out.append(text)
    return out


def check_writable_directory(output: str | os.PathLike) -> None:
    """Raise :class:`JetaceError` unless ``output``'s directory exists and is writable
    (and ``output`` itself is not a directory)."""
    path = os.fspath(output)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise JetaceError(f"{path}: the output is a directory; name a file inside it")
    if not os.path.isdir(directory):
        raise JetaceError(f"{path}: the output directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise JetaceError(f"{path}: permission denied: cannot write in the output "
                          f"directory {directory}")


def check_outputs(outputs: Iterable[str | os.PathLike | None],
                  inputs: Iterable[str | os.PathLike | None]) -> None:
    """Raise :class:`JetaceError` when an output is one of the inputs, when two outputs
    are the same file, or when an output's directory is missing or not writable.

    ``None`` entries (options not given) are ignored; input patterns are expanded.
    """
    outs = [os.fspath(o) for o in outputs if o is not None]
    ins = _expanded(i for i in inputs if i is not None)
    for i, out in enumerate(outs):
        for other in outs[:i]:
            if same_file(out, other):
                raise JetaceError(f"{out}: the same file is given for two outputs "
                                  f"({other}); choose different names")
        for source in ins:
            if same_file(out, source):
                shown = "" if os.path.abspath(out) == os.path.abspath(source) \
                    else f" ({source})"
                raise JetaceError(f"{out}: the output is one of the input files{shown}; "
                                  "writing it would destroy the input: choose another "
                                  "output name")
        check_writable_directory(out)


def check_output_of(output: str | os.PathLike, paths: str | os.PathLike | Iterable) -> None:
    """:func:`check_outputs` for one output and ``paths`` as the readers take them (a
    path, a pattern or a list of them)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    check_outputs([output], items)


def temporary_name(output: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``output`` that carries its name and this process id."""
    output = Path(output)
    return output.with_name(f".{output.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(output: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of ``output`` left by runs that no longer exist
    (killed outright); returns the paths removed."""
    output = Path(output)
    removed = []
    for tmp in output.parent.glob(f".{glob.escape(output.name)}.*.tmp"):
        pid = tmp.name[len(output.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_output(output: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``output`` to; renamed to ``output`` when the block
    ends normally, deleted when it raises (or is interrupted)."""
    output = Path(output)
    remove_stale_temporaries(output)
    tmp = temporary_name(output)
    try:
        yield tmp
        os.replace(tmp, output)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
