"""The run log: rank 0's info and every rank's warnings and errors in ``<run>/train.log``, from
separate processes appending to the one file."""
from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

CHILD = """
import logging, sys
from webtag.logs import attach_run_log, setup_logging
setup_logging("WARNING")
attach_run_log(sys.argv[1])
log = logging.getLogger("pretrain.trainer")
log.info("info from this rank")
log.warning("warning from this rank")
log.error("error from this rank")
"""


def test_rank_0_info_and_every_ranks_warnings(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO,
                              env=dict(os.environ, RANK=str(rank))) for rank in (0, 1, 2)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    lines = (tmp_path / "train.log").read_text().splitlines()
    info = [l for l in lines if "INFO" in l]
    assert len(info) == 1 and "rank 0 INFO pretrain.trainer: info from this rank" in info[0]
    for rank in (0, 1, 2):
        assert sum(f"rank {rank} WARNING" in l for l in lines) == 1
        assert sum(f"rank {rank} ERROR" in l for l in lines) == 1
    assert len(lines) == 7


def test_a_second_run_in_one_process_moves_the_log(tmp_path):
    import logging

    from webtag.logs import attach_run_log
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    log = logging.getLogger("webtag.test")
    attach_run_log(a, rank=0)
    log.warning("first run")
    attach_run_log(b, rank=0)
    log.warning("second run")
    for h in [h for h in logging.getLogger().handlers if type(h).__name__ == "_RunLog"]:
        logging.getLogger().removeHandler(h)
        h.close()
    assert "second" not in (a / "train.log").read_text() and "first" not in (b / "train.log").read_text()
