"""tests/tolerances.py is the one place a tolerance is written down: no other test file
assigns a literal number to a tolerance keyword (rtol, atol, pytest.approx's rel and abs,
as keywords, annotated defaults or keys of a keyword dict)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).parent

#: a tolerance keyword given a literal number: ``rtol=1e-6``, ``abs = 0.05``, ``atol=0``,
#: ``rtol: float = 1e-8`` (a default), ``{"rtol": 1e-5}`` (a keyword dict)
LITERAL = re.compile(r"""\b(?:rtol|atol|rel|abs)\s*(?::[^=\n]*)?=\s*[-+]?\.?[0-9]"""
                     r"""|["'](?:rtol|atol|rel|abs)["']\s*:\s*[-+]?\.?[0-9]""")


def literal_tolerances(text: str) -> list[int]:
    """Numbers (1-based) of the lines of ``text`` that state a literal tolerance."""
    return [n for n, line in enumerate(text.splitlines(), 1) if LITERAL.search(line)]


def test_no_test_file_restates_a_literal_tolerance():
    # the check can fail: each of these is caught, and what replaces them is not
    caught = ["np.testing.assert_allclose(a, b, rtol=1e-6)", "pytest.approx(x, abs=0.05)",
              "torch.testing.assert_close(a, b, rtol=0, atol=0)", "x == approx(y, rel = .5)",
              "def check(f, rtol: float = 1e-8):", 'kw = {"rtol": 1e-5, "atol": 1e-5}']
    passed = ["np.testing.assert_allclose(a, b, rtol=FLOAT32_DERIVED)",
              "assert_close(a, b, **EXACT)", 'pytest.approx(x, abs=SKLEARN["gaussian_mixture"])',
              "rel = got * np.conj(got[0])",
              "assert abs(h[3]) < exact", "def f(x, rtol=LORENTZ_INVARIANCE):"]
    assert literal_tolerances("\n".join(caught)) == list(range(1, len(caught) + 1))
    assert literal_tolerances("\n".join(passed)) == []

    found = [f"tests/{path.name}:{n}: {path.read_text().splitlines()[n - 1].strip()}"
             for path in sorted(TESTS.glob("*.py"))
             if path.name not in {"tolerances.py", Path(__file__).name}
             for n in literal_tolerances(path.read_text())]
    assert not found, ("literal tolerances outside tests/tolerances.py (name them there):\n"
                       + "\n".join(found))
