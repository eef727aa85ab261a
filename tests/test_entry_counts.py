"""Entry counts are verified (issue 18 point 3): a TTree whose header promises more
entries than its baskets hold fails naming the file and the missing entry range (or,
with --skip-bad, is skipped and listed); no command reports success with fewer jets."""

from __future__ import annotations

import struct

import pyarrow.parquet as pq
import pytest
import uproot
from toyjets import toy_jets, write_jetclass

from jetace.cli import main
from jetace.errors import InputError
from jetace.io import JetFiles, _Source

N = 30


def claim_entries(path, claimed: int):
    """Rewrite the TTree header of ``path`` (uncompressed, as uproot writes it) so that it
    promises ``claimed`` entries while the baskets hold what they held."""
    with uproot.open(path) as f:
        key = f.key("tree")
        start, held = key.fSeekKey + key.fKeylen, f["tree"].num_entries
        assert key.data_compressed_bytes == key.data_uncompressed_bytes
    data = bytearray(path.read_bytes())
    i = data.index(struct.pack(">q", held), start)  # fEntries: the first Long64 of TTree
    data[i:i + 8] = struct.pack(">q", claimed)
    path.write_bytes(bytes(data))
    with uproot.open(path) as f:
        assert f["tree"].num_entries == claimed
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("counts")
    good = write_jetclass(d / "good.root", toy_jets(N, seed=1))
    short = claim_entries(write_jetclass(d / "short.root", toy_jets(N, seed=2)), 2 * N)
    return {"good": str(good), "short": str(short), "dir": d}


def test_header_promising_more_entries_is_refused(files):
    with pytest.raises(InputError, match=rf"short.root: tree 'tree' promises {2 * N} entries "
                                         rf"but branch .* holds {N}: entries \[{N}, {2 * N}\)"):
        JetFiles(files["short"])
    with pytest.warns(UserWarning, match="short.root"):
        jf = JetFiles([files["good"], files["short"]], skip_bad=True)
    assert jf.files == [files["good"]] and "promises" in jf.skipped[0][1]


def test_short_reads_fail_naming_the_range(files):
    """Without the header check (a reader given a stale entry count), the reads
    themselves notice the missing jets: a range read, and the chunked iteration."""
    jf = JetFiles(files["good"])
    src = jf._sources[0]
    jf._sources[0] = _Source(src.path, src.tree, 2 * N, src.plan)
    with pytest.raises(InputError, match=rf"good.root: tree 'tree': entries \[{N + 5}, "
                                         rf"{N + 15}\) could not be read"):
        jf.read_range(0, N + 5, N + 15)
    with pytest.raises(InputError, match=rf"good.root.*entries \[{N}, {2 * N}\) could not"):
        list(jf.iterate(step_size=N - 10))
    with pytest.raises(InputError, match="good.root"):
        jf.read()


def test_commands_fail_or_skip_and_list(files, tmp_path, capsys):
    out = tmp_path / "f.parquet"
    argv = ["features", files["good"], files["short"], "-o", str(out), "--order", "2",
            "--degree", "3", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "short.root" in err and f"entries [{N}, {2 * N}) are missing" in err
    assert not out.exists()
    assert main([*argv, "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert f"wrote features of {N} jets" in captured.out and "short.root" in captured.err
    assert pq.read_table(out).num_rows == N
