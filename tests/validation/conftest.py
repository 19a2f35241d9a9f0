import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")

import pytest

from parl_core import garnet
from validation.core import Context
from validation.families import make_case


@pytest.fixture(scope="session")
def tiny_family():
    """Two small cases: a 3-state Garnet and a 4-state Garnet, moderate temperature."""
    return [make_case("garnet-S3-A2-g0.5-lam1.0", "garnet", garnet(3, 2, 2, gamma=0.5, seed=1), 1.0, 3, 11),
            make_case("garnet-S4-A2-g0.8-lam0.5", "garnet", garnet(4, 2, 2, gamma=0.8, seed=2), 0.5, 3, 12)]


@pytest.fixture
def ctx(tmp_path, tiny_family):
    return Context(tmp_path, quick=True, seed=0, family=tiny_family, progress=False)
