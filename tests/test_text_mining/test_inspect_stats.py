"""The inspection report's statistics on a small case worked out by hand, and the noise
estimate against the example's planted noise."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from text_mining import inspect_stats, schema
from webvision_example.plan import draw_plan, true_noise

REPO = Path(__file__).resolve().parents[2]


def _folder(tmp_path: Path) -> Path:
    """A finished text-mining folder of 5 images, 3 classes, 3 keywords."""
    out = tmp_path / "mined"
    out.mkdir(parents=True)
    images = {
        "index": [0, 1, 2, 3, 4], "key": [f"k{i}" for i in range(5)], "path": [f"p{i}.jpg" for i in range(5)],
        "source": ["google"] * 5, "query_id": [1, 1, 2, 2, 3], "query": ["a", "a", "b", "b", "c"],
        "class_id": [0, 0, 1, 1, 2],
        "keyword_ids": [[0, 1], [0], [], [2, 0], [1]],
        # image 1: top label is class 2 (noise); image 3: no own class among its labels
        "label_ids": [[0, 1], [2, 0], [1], [0, 2], [2]],
        "label_weights": [[0.7, 0.3], [0.6, 0.4], [1.0], [0.5, 0.5], [1.0]],
    }
    pq.write_table(pa.table(images, schema=schema.IMAGES), out / schema.IMAGES_FILE)
    pq.write_table(pa.table({"keyword": ["red", "sky", "dog"], "id": [0, 1, 2], "count": [3, 2, 1],
                             "df": [3, 2, 1]}, schema=schema.VOCABULARY), out / schema.VOCABULARY_FILE)
    pq.write_table(pa.table({"class_id": [0, 1, 2], "wnid": ["n1", "n2", "n3"], "name": ["ant", "bee", "cat"],
                             "words": [["ant"], ["bee"], ["cat"]]}, schema=schema.CLASSES), out / schema.CLASSES_FILE)
    pq.write_table(pa.table({"keyword_id": [], "class_ids": [], "scores": []}, schema=schema.KEYWORD_CLASSES),
                   out / schema.KEYWORD_CLASSES_FILE)
    (out / schema.REPORT_JSON).write_text(json.dumps({"problems": {"counts": {"bad_json": 2}}}))
    schema.write_complete(out, "test")
    return out


def test_statistics_by_hand(tmp_path):
    s = inspect_stats.compute(_folder(tmp_path), per_class=1, per_keyword=2, seed=0)
    assert (s.images, s.classes, s.vocabulary) == (5, 3, 3)
    assert s.keywords_per_image.tolist() == [2, 1, 0, 2, 1]
    assert s.class_counts.tolist() == [2, 2, 1]
    assert s.top_class.tolist() == [0, 2, 1, 0, 2]
    assert np.allclose(s.top_weight, [0.7, 0.6, 1.0, 0.5, 1.0])
    assert np.allclose(s.own_weight, [0.7, 0.4, 1.0, 0.0, 1.0])
    # class 0: image 1 points to class 2 -> 1/2; class 1: image 3 points to class 0 -> 1/2; class 2: 0
    assert [r.noise for r in s.rows] == [0.5, 0.5, 0.0]
    assert [r.points_to for r in s.rows] == [[(2, 1)], [(0, 1)], []]
    # keywords by class: class 0 has red twice, sky once; class 1 dog and red once each
    assert s.rows[0].top_keywords == [(0, 2), (1, 1)]
    assert s.rows[1].top_keywords == [(0, 1), (2, 1)]
    assert (s.rows[0].clean, s.rows[0].suspect) == ([0], [1])
    assert (s.rows[1].clean, s.rows[1].suspect) == ([2], [3])
    assert s.problems == {"bad_json": 2}
    assert sorted(s.keyword_samples) == [0, 1, 2] and s.keyword_samples[2] == [3]
    assert s.keyword_samples[1] == [0, 4] and len(s.keyword_samples[0]) == 2 and set(s.keyword_samples[0]) <= {0, 1, 3}
    csv = inspect_stats.class_table_csv(s).splitlines()
    assert csv[1] == "0,n1,ant,2,0.5000,cat:1,red sky"
    again = inspect_stats.compute(_folder(tmp_path / "again"), per_class=1, per_keyword=2, seed=0)
    assert [(r.clean, r.suspect) for r in again.rows] == [(r.clean, r.suspect) for r in s.rows]


def test_estimated_noise_follows_the_planted_noise(tmp_path):
    """On the example release (10 classes, 24 images each, seed 0) the per-class estimate must
    rise with the planted share of texts about another class."""
    root, mined, report = tmp_path / "ex", tmp_path / "mined", tmp_path / "report"
    run = lambda *a: subprocess.run([sys.executable, *a], cwd=REPO, check=True, capture_output=True)
    run("-m", "webvision_example", "--out", str(root), "--classes", "10", "--images-per-class", "24", "--seed", "0")
    run("-m", "text_mining", "run", "--webvision", str(root), "--out", str(mined),
        "--config", "configs/text_mining/example.yaml", "--workers", "1", "--num-parts", "1")
    run("-m", "text_mining", "inspect", "--labels", str(mined), "--webvision", str(root), "--out", str(report))
    estimated = json.loads((report / "inspect.json").read_text())["noise"]
    plan = draw_plan(0, 10, 24, 3)
    truth = true_noise(plan)
    est = [estimated[c.wnid] for c in plan.classes]
    r = float(np.corrcoef(truth, est)[0, 1])
    print(f"planted {np.round(truth, 3).tolist()}\nestimated {np.round(est, 3).tolist()}\nPearson r = {r:.3f}; "
          f"mean planted {np.mean(truth):.3f}, mean estimated {np.mean(est):.3f}")
    assert r >= 0.4, (r, truth, est)
    assert max(truth) >= 0.25 and min(truth) == 0.0     # the planted rates do differ
