"""The example as img2dataset would have downloaded it: the training images of an example release
re-packed into tar shards ``00000.tar ...`` whose samples hold ``.jpg``, a ``.txt`` caption (the
image's title and description) and a ``.json`` (``url``, ``key``, ``status``, ``caption``, and
``label``, the wnid, on every other sample, as img2dataset's ``--save_additional_columns`` keeps
it), with the per-shard ``00000.parquet`` and ``00000_stats.json``; plus ``synsets.txt``, the
classes' WordNet ids one a line (the names come from WordNet)."""
from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .release import make_example


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime = len(data), 0
    tf.addfile(info, io.BytesIO(data))


def make_img2dataset(out, classes: int = 4, images_per_class: int = 8, seed: int = 0,
                     per_shard: int = 16) -> dict:
    """Write the img2dataset-style example to the new or empty folder ``out``; returns a summary."""
    out = Path(out).expanduser().absolute()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rel = Path(tmp) / "release"
        make_example(rel, classes=classes, images_per_class=images_per_class, seed=seed, val_per_class=0)
        wnids = [line.split()[0] for line in (rel / "info/synsets.txt").read_text().splitlines() if line.strip()]
        files = (rel / "info/train_filelist_all.txt").read_text().splitlines()
        metas = (rel / "info/train_meta_list_all.txt").read_text().splitlines()
        loaded: dict[str, list] = {}
        samples = []
        for i, (fline, mline) in enumerate(zip(files, metas)):
            path, cid = fline.split()
            jrel, row = mline.split()
            if jrel not in loaded:
                loaded[jrel] = json.loads((rel / jrel).read_text(encoding="utf-8"))
            meta = loaded[jrel][int(row) - 1]
            caption = " ".join(str(meta.get(k) or "") for k in ("title", "description")).strip()
            samples.append((f"{i:09d}", (rel / path).read_bytes(), caption, wnids[int(cid)], path))
        shards = 0
        for s in range(0, len(samples), per_shard):
            name = f"{shards:05d}"
            rows = {"key": [], "url": [], "caption": [], "status": [], "label": []}
            with tarfile.open(out / f"{name}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
                for j, (key, data, caption, wnid, path) in enumerate(samples[s:s + per_shard]):
                    label = wnid if (s + j) % 2 == 0 else None
                    meta = {"url": f"https://example.com/{path}", "key": key, "status": "success",
                            "caption": caption, "width": None, "height": None, "error_message": None}
                    if label:
                        meta["label"] = label
                    _add(tf, f"{key}.jpg", data)
                    _add(tf, f"{key}.txt", caption.encode())
                    _add(tf, f"{key}.json", json.dumps(meta).encode())
                    for k, v in (("key", key), ("url", meta["url"]), ("caption", caption),
                                 ("status", "success"), ("label", label)):
                        rows[k].append(v)
            # a failed download: in the shard's parquet only, as img2dataset writes it
            for k, v in (("key", f"{name}_failed"), ("url", "https://example.com/gone.jpg"), ("caption", ""),
                         ("status", "failed_to_download"), ("label", None)):
                rows[k].append(v)
            pq.write_table(pa.table(rows, schema=pa.schema([(k, pa.string()) for k in rows])),
                           out / f"{name}.parquet")
            n_ok = len(rows["key"]) - 1
            (out / f"{name}_stats.json").write_text(json.dumps(
                {"count": n_ok + 1, "successes": n_ok, "failed_to_download": 1}, indent=1))
            shards += 1
    (out / "synsets.txt").write_text("".join(w + "\n" for w in wnids))
    return {"out": str(out), "classes": len(wnids), "samples": len(samples), "shards": shards}
