"""The keyword frequency plot of the merge step: one artist for the rank curve, whatever the
vocabulary size (a bar per keyword made the plot most of the merge step's time)."""
from __future__ import annotations

import matplotlib
import matplotlib.figure
import numpy as np
from PIL import Image

from text_mining.report import keyword_plot


def test_rank_curve_is_one_artist_for_a_large_vocabulary(tmp_path, monkeypatch):
    matplotlib.use("Agg")
    seen = {}
    save = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["artists"] = len(fig.axes[0].patches) + len(fig.axes[0].collections)
        seen["ylim"] = fig.axes[0].get_ylim()
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    df = np.sort(np.random.default_rng(0).integers(5, 5000, 20000))[::-1]
    hist = np.bincount(np.random.default_rng(1).poisson(17, 1000))
    keyword_plot(df, 20, tmp_path / "kw.png", hist)
    assert seen["artists"] == 1
    assert seen["ylim"][1] >= df.max()          # the curve reaches the most common keyword
    with Image.open(tmp_path / "kw.png") as im:
        assert im.size[0] > 1000 and im.format == "PNG"
