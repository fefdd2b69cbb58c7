"""Thumbnails of chosen training images, from the release's files or from train shards.

The image side of ``python -m text_mining inspect`` (text mining opens no image itself): it
writes a request file and runs ``python -m pipeline.thumbnails REQUEST.json`` as a separate
process. The request: ``{"items": [{"index": I, "path": P}, ...], "webvision": ROOT or null,
"shards": SHARDS or null, "out": DIR, "size": S}``. Each image becomes ``DIR/<index>.jpg``
(longer side S, JPEG quality 80); the answer, ``DIR/thumbnails.json``, maps each index to its
file name or to why there is none. From shards only the shards that hold a wanted image are read
(found through the train split's manifest), each once, front to back.
"""
from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

from PIL import Image

from pipeline import schema

ANSWER = "thumbnails.json"


def thumbnail(data: bytes, size: int) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.draft("RGB", (size, size))
    img = img.convert("RGB")
    img.thumbnail((size, size))
    return img


def _from_release(items: list[dict], root: Path):
    for item in items:
        path = root / item["path"]
        try:
            yield item["index"], path.read_bytes()
        except OSError as exc:
            yield item["index"], f"cannot read {path}: {exc.strerror or exc}"


def _from_shards(items: list[dict], shards: Path):
    import pyarrow.parquet as pq
    train = shards / "train" if (shards / "train" / schema.MANIFEST_FILE).is_file() else shards
    manifest = pq.read_table(train / schema.MANIFEST_FILE, columns=["shard", "index"]).to_pydict()
    where = dict(zip(manifest["index"], manifest["shard"]))
    wanted: dict[str, set[int]] = {}
    for item in items:
        shard = where.get(item["index"])
        if shard is None:
            yield item["index"], f"not in {train / schema.MANIFEST_FILE}"
        else:
            wanted.setdefault(shard, set()).add(item["index"])
    for shard, indices in sorted(wanted.items()):
        left = set(indices)
        try:
            with tarfile.open(train / shard) as tar:
                for member in tar:
                    stem, _, ext = member.name.rpartition(".")
                    if ext == schema.IMAGE_EXT and stem.isdigit() and int(stem) in left:
                        left.discard(int(stem))
                        yield int(stem), tar.extractfile(member).read()
                        if not left:
                            break
        except (OSError, tarfile.TarError) as exc:
            yield from ((i, f"cannot read {train / shard}: {exc}") for i in sorted(left))
            continue
        yield from ((i, f"not found in {train / shard}") for i in sorted(left))


def make_thumbnails(request: dict) -> dict[int, str]:
    """Write the thumbnails of ``request`` (see the module docstring); index -> file name, or
    ``"error: ..."``."""
    out = Path(request["out"])
    out.mkdir(parents=True, exist_ok=True)
    size = int(request.get("size", 128))
    items = request["items"]
    source = (_from_shards(items, Path(request["shards"])) if request.get("shards")
              else _from_release(items, Path(request["webvision"])))
    answer: dict[int, str] = {}
    for index, data in source:
        if isinstance(data, str):
            answer[index] = f"error: {data}"
            continue
        try:
            img = thumbnail(data, size)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            answer[index] = f"error: image {index} does not decode: {exc}"
            continue
        name = f"{index}.jpg"
        img.save(out / name, "JPEG", quality=80)
        answer[index] = name
    return answer


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m pipeline.thumbnails REQUEST.json", file=sys.stderr)
        return 2
    try:
        request = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        answer = make_thumbnails(request)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {args[0]}: {exc}", file=sys.stderr)
        return 2
    (Path(request["out"]) / ANSWER).write_text(json.dumps({str(k): v for k, v in answer.items()}), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
