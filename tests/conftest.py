import os
from pathlib import Path

import pytest

from tests.fixtures import tiny_texts, write_tiny_bert, write_tiny_rusentiment

REAL_DATA = os.environ.get("RUSENTIMENT_DATA_DIR")
# a test that needs one of these trains, starts Ray or runs a subprocess: it is "slow", and
# `pytest -m "not slow"` (the day-to-day subset, about a minute) leaves it out
SLOW_FIXTURES = {"ray_local", "no_ray_in_process", "searched", "recipes_run", "e5_dir", "tiny_teacher"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Caches (rebuilt e5, tokenised data) go to a temporary folder, never the user's."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("RUSENTIMENT_KD_CACHE")
    os.environ["RUSENTIMENT_KD_CACHE"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    yield cache
    if old is None:
        os.environ.pop("RUSENTIMENT_KD_CACHE", None)
    else:
        os.environ["RUSENTIMENT_KD_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_tiny_rusentiment(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    import random

    rng = random.Random(1)
    texts = [t for label in ("negative", "neutral", "positive", "skip", "speech") for t in tiny_texts(label, 50, rng)]
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), texts)


@pytest.fixture(scope="session")
def tiny_teacher(tiny_data, tiny_bert, tmp_path_factory, _ray_session) -> Path:
    """The tiny teacher, trained once per session: ``tiny_bert`` fine-tuned for one epoch on ``tiny_data`` (seed 13)
    by ``search/run.py --stage teacher``. An experiment folder holding only the teacher stage; a test starts its own
    experiment from a copy (``tests.fixtures.with_teacher``), and its run reuses the teacher ("teacher: reusing")."""
    import ray

    from search.run import main

    if not ray.is_initialized():  # as ray_local starts it (a test that needs none stops it: no_ray_in_process)
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    storage = tmp_path_factory.mktemp("tiny-teacher")
    assert main(["--teacher", str(tiny_bert), "--data-dir", str(tiny_data), "--storage", str(storage),
                 "--name", "teacher", "--teacher-epochs", "1", "--stage", "teacher"]) == 0
    return storage / "teacher"


@pytest.fixture(scope="session")
def e5_dir(isolated_cache) -> Path:
    from teachers.e5 import export_e5_small

    return export_e5_small(isolated_cache / "teachers" / "e5-small")


@pytest.fixture(scope="session")
def _ray_session():
    """Stops the tests' in-process Ray once, at the end of the session."""
    yield
    import ray

    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local(_ray_session):
    """The tests' in-process Ray (2 CPUs), started here and only here: per module, (re)started when a module
    that needs none (``no_ray_in_process``) stopped it, so no later test runs on a Ray that
    ``search/run.py`` would start with every core."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield


@pytest.fixture
def no_ray_in_process():
    """For tests that start their own Ray processes: the in-process test cluster must not be running
    (``ray_local`` starts it again for the next module that needs it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    yield
