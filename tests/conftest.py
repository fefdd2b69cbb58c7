"""Shared fixtures: generated WebVision-format examples and one mined example."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from text_mining.config import TextMiningConfig
from webtag.config import load_config
from webvision_example import make_example

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "configs" / "text_mining" / "example.yaml"


def example_config(*overrides: str) -> TextMiningConfig:
    return load_config(TextMiningConfig, EXAMPLE_CONFIG, overrides)


@pytest.fixture(scope="session")
def example_v1(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ex") / "webvision1"
    make_example(out, classes=8, images_per_class=16, seed=3, version="1.0")
    return out


@pytest.fixture(scope="session")
def example_v2(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ex") / "webvision2"
    make_example(out, classes=6, images_per_class=12, seed=5, version="2.0", images=False)
    return out


@pytest.fixture(scope="session")
def mined_v1(example_v1, tmp_path_factory) -> Path:
    """The whole stage on example_v1 in one process and one part."""
    from text_mining.runner import run_all
    out = tmp_path_factory.mktemp("mined") / "v1"
    run_all(example_v1, out, example_config(), workers=1, num_parts=1)
    return out


@pytest.fixture(scope="session")
def wn():
    from text_mining.wordnet import load_wordnet
    return load_wordnet()


def pytest_configure(config):
    os.environ.setdefault("WEBTAG_LOG", "WARNING")


@pytest.fixture(scope="session")
def shards_v1(example_v1, mined_v1, tmp_path_factory) -> Path:
    """example_v1's train, val and test shards, small ones (several per rank for 2 ranks)."""
    from pipeline.shards import ShardConfig, shard_all
    out = tmp_path_factory.mktemp("shards") / "v1"
    shard_all(example_v1, mined_v1, out, ShardConfig(max_size=100_000), workers=1, num_parts=2)
    return out


PRETRAIN_EXAMPLE = REPO / "configs" / "pretrain" / "example.yaml"


def pretrain_overrides(shards: Path, mined: Path, out: Path, *extra: str) -> list[str]:
    """key=value overrides that point configs/pretrain/example.yaml at test data."""
    return [f"data.shards={shards}", f"data.labels={mined}", f"train.output_dir={out}",
            "train.progress=false", "train.tensorboard=false", *extra]


def machine_command(rank: int, port: int, overrides: list[str], entry: str = "pretrain/main.py") -> list[str]:
    """`accelerate launch` of one of two "machines" on loopback (2 CPU processes over gloo; the
    environment needs ACCELERATE_USE_CPU=1), machine ``rank`` of the job at ``port``."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "2", "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1",
            "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
            str(REPO / entry), "--config", str(PRETRAIN_EXAMPLE), *overrides]


@pytest.fixture
def fresh_accelerate_state():
    """Accelerate keeps process-wide singletons: every in-process trainer starts from scratch
    (use with ``pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")``)."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


# --- object storage (tests/test_storage): the environment that points s3fs at the server, as a user
# sets it (credentials and endpoint) ---

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server on loopback (moto's standalone server), one per session (here,
    not in a module the tests import: a fixture imported by two test modules is two fixtures, two
    servers). The endpoint URL; its AWS_* environment is set for this process and the
    processes it starts, and restored afterwards."""
    pytest.importorskip("s3fs", reason="the s3 extra: pip install 'webtag[s3]'")
    pytest.importorskip("moto", reason="moto[server]: pip install 'webtag[dev]'")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"moto server did not start on {url}")
            time.sleep(0.2)
    env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield url
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def bucket(s3_server, request):
    """A new, empty bucket for one test: its s3:// URL."""
    import s3fs
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}"
