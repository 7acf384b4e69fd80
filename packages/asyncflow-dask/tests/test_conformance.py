"""The backend contract (asyncflow.testing), on a LocalCluster of two worker processes."""

from __future__ import annotations

from asyncflow.testing import BackendConformance


class TestDaskConformance(BackendConformance):
    backend_name = "dask"
    backend_options = {"n_workers": 2, "threads_per_worker": 2}
