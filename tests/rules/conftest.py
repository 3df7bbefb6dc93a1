import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "host"))
DATA = Path(__file__).resolve().parent / "data"

import pytest  # noqa: E402

from p4cs.rules import extract  # noqa: E402


@pytest.fixture(params=["scanner", "libxml2"])
def xml_impl(request, monkeypatch):
    """Runs a test with the C XML scanner in front of libxml2 and with libxml2 alone (as when
    the package is installed without its C part)."""
    if request.param == "scanner" and extract._xmlscan is None:
        pytest.skip("p4cs.rules._xmlscan is not built (setup.py build_ext --inplace)")
    if request.param == "libxml2":
        monkeypatch.setattr(extract, "_xmlscan", None)
    extract._compiled.cache_clear()
    yield request.param
    extract._compiled.cache_clear()
