"""Reading a user-named legacy pickle of data (e.g. the label word vectors that ML-GCN's releases
ship as ``*.pkl``) without letting it run code.

A pickle names the callables that rebuild its objects (``GLOBAL module name``) and the unpickler
calls them: ``os.system`` works as well as ``numpy.ndarray``. :class:`DataUnpickler` resolves only
the names that rebuild numpy arrays, dtypes and scalars (every protocol, numpy 1.x and 2.x module
paths) and the plain containers; anything else is refused before it is called, so a crafted file
stops with :class:`UnsafePickle` naming the file and the refused callable. The same approach as
``torch.load(weights_only=True)`` (torch/_weights_only_unpickler.py), for numpy instead of torch.

Nothing that webtag writes is a pickle; this module exists only for files a user names.
"""
from __future__ import annotations

import codecs
import collections
import io
import pickle
from pathlib import Path

import numpy as np

try:  # numpy 2.x
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,   # bytes in protocol 0-2 pickles
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _mod in ("numpy.core", "numpy._core"):   # pickles name the module of the numpy that wrote them
    _ALLOWED[(f"{_mod}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(f"{_mod}.multiarray", "scalar")] = _multiarray.scalar
    _ALLOWED[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer
_ALLOWED.update({("__builtin__", name): obj for (mod, name), obj in list(_ALLOWED.items())
                 if mod == "builtins"})   # the name in protocol 0-2 pickles (Python 2's module)
# numpy >= 1.25 pickles a dtype as its class (numpy.dtypes.Float32DType ...): the DType classes
_ALLOWED.update({("numpy.dtypes", name): getattr(np.dtypes, name) for name in dir(np.dtypes)
                 if name.endswith("DType") and isinstance(getattr(np.dtypes, name), type)})


class UnsafePickle(pickle.UnpicklingError):
    """A pickle that needs more than numpy arrays and plain containers, or is not a pickle."""


class DataUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only numpy's array/dtype/scalar rebuilders and builtins
    containers; ``name`` (the file) is named in the refusal."""

    def __init__(self, file, name: str = "<pickle>"):
        super().__init__(file, encoding="latin1")   # latin1: Python 2 pickles of numpy arrays
        self.name = name

    def find_class(self, module: str, name: str):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise UnsafePickle(f"{self.name}: refused to unpickle {module}.{name}: only numpy arrays and plain "
                               "containers are accepted (a pickle can run code); save the matrix with numpy.save "
                               "as .npy instead")
        return found

    def persistent_load(self, pid):
        raise UnsafePickle(f"{self.name}: refused a persistent id in the pickle (not a plain data pickle)")


def load_data_pickle(path: str | Path):
    """The object in the pickle ``path``, if it holds only numpy arrays and plain containers;
    else :class:`UnsafePickle` (also for a file that is not a whole pickle)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return DataUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafePickle:
        raise
    except Exception as exc:   # truncated, not a pickle, a state numpy refuses ...
        raise UnsafePickle(f"{path}: not a readable pickle of an array ({type(exc).__name__}: {exc})") from None
