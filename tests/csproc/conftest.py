import pytest
from cs_harness import Harness


@pytest.fixture
def h():
    return Harness()
