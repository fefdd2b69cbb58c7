"""bench/loader_instructions.py: callgrind's totals read back, the per-image difference of two runs
(with a stand-in valgrind that runs the real child and writes callgrind-style totals from the
images it did), and its one-line errors."""
import os
import re
import stat
import subprocess
import sys

import pytest

from conftest import REPO

BENCH = REPO / "bench" / "loader_instructions.py"

sys.path.insert(0, str(REPO / "bench"))
from loader_instructions import callgrind_events  # noqa: E402


def test_callgrind_instructions_per_process(tmp_path):
    (tmp_path / "cg.101").write_text("version: 1\ncmd: python\nevents: Ir\nsummary: 5000\nfn=x\n1 5000\ntotals: 5000\n")
    (tmp_path / "cg.202").write_text("events: Ir\nsummary: 70\n")
    assert {pid: ev["Ir"] for pid, ev in callgrind_events(tmp_path).items()} == {101: 5000, 202: 70}
    (tmp_path / "cg.303").write_text("events: Ir\nfn=x\n")   # cut short
    with pytest.raises(ValueError, match=r"cg\.303: no 'totals:'"):
        callgrind_events(tmp_path)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    res = subprocess.run([sys.executable, str(REPO / "bench" / "loader.py"), "--classes", "3",
                          "--images-per-class", "8", "--batch", "8", "--image-size", "32", "--workers", "1",
                          "--repeats", "1", "--epochs", "1", "--shard-count", "10", "--workdir", str(work)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return work


FAKE = """\
#!{python}
# a stand-in for valgrind --tool=callgrind: runs the command, then writes what callgrind would
# for a top process of 1000 + 7 x images instructions and (a worker) 500 + 3 x images
import re, subprocess, sys
out_file = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--callgrind-out-file="))
i = next(k for k, a in enumerate(sys.argv) if a == "{python}" and k > 0)
res = subprocess.run(sys.argv[i:], capture_output=True, text=True)
images = int(res.stdout.split()[-1])
import os
pid = os.getpid()
if "--cache-sim=yes" in sys.argv:     # Ir, then per image D1 misses 2000 + 1000, LL 0 + 500 + 500
    head = "events: Ir D1mr D1mw ILmr DLmr DLmw\\n"
    top = "summary: %d %d %d 7 %d %d\\n" % (1000 + 7 * images, 40 + 2000 * images, 9 + 1000 * images,
                                            5 + 500 * images, 500 * images)
    kid = "totals: %d %d 0 0 0 %d\\n" % (500 + 3 * images, 3000 * images, 3000 * images)   # a worker's
else:
    head, top, kid = "", "summary: %d\\n" % (1000 + 7 * images), "totals: %d\\n" % (500 + 3 * images)
open(out_file.replace("%p", str(pid)), "w").write(head + top)
if "loader" in sys.argv:
    open(out_file.replace("%p", str(pid + 1)), "w").write(head + kid)
sys.stdout.write(res.stdout)
if "--cache-sim=yes" in sys.argv:
    sys.stderr.write("==%d== Cache configuration used:\\n==%d==   D1: 32,768 B, 8-way, 64 B lines\\n"
                     "==%d==   LL: 33,554,432 B, 16-way, 64 B lines\\n" % (pid, pid, pid))
sys.exit(res.returncode)
"""


def run_with_fake_valgrind(shards, tmp_path, *extra: str) -> str:
    """The benchmark's output with FAKE as valgrind (first on PATH), over 1 and 2 passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "valgrind"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run([sys.executable, str(BENCH), "--workdir", str(shards), "--batch", "8",
                          "--image-size", "32", "--passes", "1", "2", "--tmp", str(tmp_path), *extra],
                         capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_per_image_difference_of_two_runs(shards, tmp_path):
    out = run_with_fake_valgrind(shards, tmp_path)
    # the fixed parts (1000, 500) cancel: 7 per image in the plain loop, 7 + 3 in the loader
    assert re.search(r"plain decode\+augment loop: 0\.000 M", out), out
    m = re.search(r"loader: .* -> plain / loader ([\d.]+), overhead \+([\d.]+)%", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(0.7, abs=1e-3)
    assert float(m.group(2)) == pytest.approx(42.9, abs=0.1)
    assert re.search(r"the workers alone -57\.1%", out), out
    assert not list(tmp_path.glob("cg_*")), "callgrind's files are deleted after each run"
    assert "cache misses" not in out


def test_simulated_cache_misses_per_image(shards, tmp_path):
    """--cache-sim: callgrind's miss events read by name from its events line, per image as the
    instructions are (D1 = D1mr + D1mw, LL = ILmr + DLmr + DLmw), the loader's workers included."""
    out = run_with_fake_valgrind(shards, tmp_path, "--cache-sim")
    assert re.search(r"plain / loader 0\.700, overhead \+42\.9%", out), out      # instructions as before
    assert "its model: D1 32,768 B, 8-way, 64 B lines; LL 33,554,432 B, 16-way, 64 B lines" in out, out
    # D1: plain 3,000 per image, loader 3,000 + 3,000 (its worker); LL: plain 1,000, loader 1,000 + 3,000
    assert re.search(r"D1: plain loop 3,000, loader 6,000 \(workers 3,000, main process 3,000\) -> \+100\.0%", out), out
    assert re.search(r"LL: plain loop 1,000, loader 4,000 \(workers 3,000, main process 1,000\) -> \+300\.0%", out), out


def test_callgrind_events_by_name(tmp_path):
    (tmp_path / "cg.7").write_text("events: Ir D1mr DLmw\nsummary: 100 5 2\n")
    (tmp_path / "cg.8").write_text("events: Ir D1mr DLmw\ntotals: 60 3\n")   # trailing zeros left out
    assert callgrind_events(tmp_path) == {7: {"Ir": 100, "D1mr": 5, "DLmw": 2}, 8: {"Ir": 60, "D1mr": 3, "DLmw": 0}}


def test_one_line_errors(tmp_path):
    res = subprocess.run([sys.executable, str(BENCH), "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert f"{tmp_path / 'shards' / 'train'}: no shards" in res.stderr
    (tmp_path / "shards" / "train").mkdir(parents=True)
    (tmp_path / "shards" / "train" / "sizes.json").write_text("{}")
    env = {**os.environ, "PATH": str(tmp_path / "nowhere")}
    res = subprocess.run([sys.executable, str(BENCH), "--workdir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60, env=env)
    assert res.returncode == 2 and "valgrind is not installed" in res.stderr and res.stderr.strip().count("\n") == 0
