"""Images the web really serves: real PNG, GIF and WebP bytes saved as ``.jpg`` in a release go
into the shards as decodable RGB JPEGs (counted as ``reencoded``, transparency on white, a GIF's
first frame); only what decodes as nothing is dropped."""
import io
import json
import shutil

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipeline import schema
from text_mining import schema as tm_schema


def _png_with_alpha() -> bytes:
    img = Image.new("RGBA", (48, 40), (200, 30, 30, 255))
    img.paste((0, 0, 255, 0), (0, 0, 24, 40))          # left half fully transparent
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (40, 48), colour) for colour in ((20, 160, 20), (250, 250, 0))]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def _webp() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (36, 36), (30, 30, 200)).save(out, format="WEBP", quality=90)
    return out.getvalue()


@pytest.fixture
def web_release(example_v1, tmp_path):
    root = tmp_path / "release"
    shutil.copytree(example_v1, root)
    files = [l.split()[0] for l in (root / "info" / "train_filelist_all.txt").read_text().splitlines()]
    kinds = {files[1]: _png_with_alpha(), files[2]: _animated_gif(), files[3]: _webp(),
             files[4]: _png_with_alpha()[:80],                       # a truncated PNG: does not decode
             files[5]: b"<!DOCTYPE html><html><body>404</body></html>"}   # an error page saved as .jpg
    for name, data in kinds.items():
        (root / name).write_bytes(data)
    return root, files


def test_png_gif_webp_named_jpg_are_reencoded(web_release, mined_v1, tmp_path, capsys):
    from pipeline.__main__ import main
    root, files = web_release
    out = tmp_path / "shards"
    assert main(["shard", "--webvision", str(root), "--labels", str(mined_v1), "--out", str(out), "--split", "train",
                 "--workers", "1", "--num-parts", "2"]) == 0, capsys.readouterr().err
    report = json.loads((out / "train" / schema.REPORT_FILE).read_text())
    assert report["reencoded"] == 3
    assert report["problems"]["counts"] == {"bad_image": 1, "not_image": 1}
    assert str(root / files[4]) in report["problems"]["files"]["bad_image"]
    assert str(root / files[5]) in report["problems"]["files"]["not_image"]
    assert report["samples"] == pq.read_metadata(mined_v1 / tm_schema.IMAGES_FILE).num_rows - 2

    urls = [str(out / "train" / name) for name in schema.read_sizes(out / "train")]
    stored = {json.loads(s["json"])["path"]: s["jpg"] for s in wds.WebDataset(urls, shardshuffle=False)}
    assert files[4] not in stored and files[5] not in stored
    for name, size in ((files[1], (48, 40)), (files[2], (40, 48)), (files[3], (36, 36))):
        img = Image.open(io.BytesIO(stored[name]))
        img.load()
        assert img.format == "JPEG" and img.mode == "RGB" and img.size == size
    png = Image.open(io.BytesIO(stored[files[1]]))
    assert all(c > 240 for c in png.getpixel((6, 20)))                 # transparent -> white
    r, g, b = png.getpixel((40, 20))
    assert r > 170 and g < 70 and b < 70                                # the opaque half kept its colour
    r, g, b = Image.open(io.BytesIO(stored[files[2]])).getpixel((20, 24))
    assert g > 130 and r < 60 and b < 60                                # the GIF's first frame (green)
    r, g, b = Image.open(io.BytesIO(stored[files[3]])).getpixel((18, 18))
    assert b > 160 and r < 70 and g < 70
    # the JPEGs of the release are stored as they are
    assert stored[files[0]] == (root / files[0]).read_bytes()
