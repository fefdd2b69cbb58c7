"""State files of a checkpoint that hold only data: no pickle is written or read.

A state (a ``state_dict()``: nested dicts, lists, tuples, numbers, strings, tensors) is stored as

- ``NAME.safetensors`` alone when it is a flat ``{str: tensor}`` mapping (a model's weights);
- else ``NAME.json``, the structure, in which every tensor is a reference ``{"__tensor__": key}``
  into ``NAME.safetensors`` (written when the state has tensors). Tuples, dicts with keys other
  than strings (an optimizer's parameter indices) and small numpy arrays (numpy's RNG state)
  are tagged so that they come back as they were.

``load_state`` reads them back with ``json`` and ``safetensors`` only: a crafted file can give
wrong numbers, never run code. :func:`rng_state` / :func:`set_rng_state` are a process's random
generators (python, numpy, torch CPU and CUDA) as such a state. Files are written with plain
``open``/``write`` so that a full disk is an ``OSError``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

TENSOR, TUPLE, ITEMS, NDARRAY = "__tensor__", "__tuple__", "__items__", "__ndarray__"
_TAGS = (TENSOR, TUPLE, ITEMS, NDARRAY)


class StateFormatError(ValueError):
    """A state file that does not hold what this module writes."""


def state_files(folder: str | Path, name: str) -> list[Path]:
    """The files of state ``name`` that exist in ``folder``."""
    folder = Path(folder)
    return [p for p in (folder / f"{name}.json", folder / f"{name}.safetensors") if p.is_file()]


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()


def _is_flat_tensors(state) -> bool:
    return isinstance(state, dict) and bool(state) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())


class _Encoder:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self._storages: dict[int, list[tuple[torch.Tensor, str]]] = {}

    def tensor(self, t: torch.Tensor, key: str) -> str:
        t = t.detach()
        if t.layout != torch.strided:
            raise TypeError(f"{key}: a {t.layout} tensor cannot be stored (dense tensors only)")
        t = t.cpu().contiguous()
        ptr = t.untyped_storage().data_ptr()
        for other, other_key in self._storages.get(ptr, []):   # the same tensor twice: one entry
            if other.shape == t.shape and other.dtype == t.dtype and other.data_ptr() == t.data_ptr():
                return other_key
        if ptr in self._storages:   # a view of a stored tensor's storage: safetensors wants its own copy
            t = t.clone()
        self._storages.setdefault(ptr, []).append((t, key))
        self.tensors[key] = t
        return key

    def encode(self, obj, path: str):
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, torch.Tensor):
            return {TENSOR: self.tensor(obj, path)}
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind not in "biuf" or obj.size > 100_000:
                raise TypeError(f"{path}: a numpy array of {obj.dtype}, shape {obj.shape} is not stored as JSON")
            return {NDARRAY: obj.tolist(), "dtype": obj.dtype.str}
        if isinstance(obj, tuple):
            return {TUPLE: [self.encode(v, f"{path}/{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            return [self.encode(v, f"{path}/{i}") for i, v in enumerate(obj)]
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v, f"{path}/{k}" if path else k) for k, v in obj.items()}
            return {ITEMS: [[self.encode(k, f"{path}/key"), self.encode(v, f"{path}/{k}")] for k, v in obj.items()]}
        raise TypeError(f"{path or 'state'}: a {type(obj).__name__} cannot be stored as data")


def save_state(state, folder: str | Path, name: str) -> list[Path]:
    """Write ``state`` as ``name``'s files in ``folder``; returns them."""
    from safetensors.torch import save

    folder = Path(folder)
    if _is_flat_tensors(state):
        tensors, seen = {}, set()
        for k, v in state.items():
            t = v.detach().cpu().contiguous()
            ptr = t.untyped_storage().data_ptr()
            tensors[k] = t.clone() if ptr in seen else t   # tied weights: safetensors stores each once
            seen.add(ptr)
        path = folder / f"{name}.safetensors"
        _write(path, save(tensors))
        return [path]
    enc = _Encoder()
    tree = enc.encode(state, "")
    written = []
    if enc.tensors:
        path = folder / f"{name}.safetensors"
        _write(path, save(enc.tensors))
        written.append(path)
    path = folder / f"{name}.json"
    _write(path, json.dumps({"format": 1, "state": tree}).encode("utf-8"))
    return [path, *written]


def _decode(obj, tensors: dict, where: str):
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if TENSOR in obj:
        key = obj[TENSOR]
        if not isinstance(key, str) or key not in tensors:
            raise StateFormatError(f"{where}: tensor {key!r} is not in its .safetensors file")
        return tensors[key]
    if TUPLE in obj:
        return tuple(_decode(v, tensors, where) for v in obj[TUPLE])
    if ITEMS in obj:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in obj[ITEMS]}
    if NDARRAY in obj:
        return np.asarray(obj[NDARRAY], dtype=np.dtype(str(obj["dtype"])))
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def load_state(folder: str | Path, name: str, allowed: set[str] | None = None):
    """The state that :func:`save_state` wrote as ``name`` in ``folder`` (tensors on the CPU).
    ``allowed``: the file names that may be read (a checkpoint's verified manifest)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    js, st = folder / f"{name}.json", folder / f"{name}.safetensors"

    def check(path: Path) -> Path:
        if allowed is not None and path.name not in allowed:
            raise StateFormatError(f"{path}: not listed in the checkpoint's manifest")
        return path

    has_json = js.is_file() if allowed is None else js.name in allowed
    has_st = st.is_file() if allowed is None else st.name in allowed
    if not has_json and not has_st:
        raise StateFormatError(f"{folder}: no {name}.json or {name}.safetensors")
    try:
        tensors = load_file(str(check(st)), device="cpu") if has_st else {}
    except StateFormatError:
        raise
    except Exception as exc:   # safetensors' own error type: a header or size that does not fit
        raise StateFormatError(f"{st}: not a readable safetensors file ({exc})") from None
    if not has_json:
        return tensors
    try:
        doc = json.loads(check(js).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != 1 or "state" not in doc:
            raise ValueError("not a webtag state file")
        return _decode(doc["state"], tensors, str(js))
    except StateFormatError:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise StateFormatError(f"{js}: not a readable state file ({exc})") from None


# ---- random generators ---------------------------------------------------------------------
def rng_state() -> dict:
    """This process's random generators (what Accelerate's ``random_states_N.pkl`` held)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, where: str) -> None:
    """Restore :func:`rng_state`'s ``state``; a part that does not fit raises StateFormatError."""
    try:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        np.random.set_state(tuple(state["numpy"]))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            cuda = list(state["cuda"])
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
            else:   # another number of visible devices: this process's own
                torch.cuda.set_rng_state(cuda[min(torch.cuda.current_device(), len(cuda) - 1)])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise StateFormatError(f"{where}: not a random-generator state ({type(exc).__name__}: {exc})") from None
