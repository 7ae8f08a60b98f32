"""Array plumbing: NumPy when it is importable, the standard library otherwise.

* Inputs (states, actions, log-rewards...) accept NumPy arrays (passed to C without a copy
  when already C-contiguous with the right dtype), any buffer of the right item type
  (``array.array('i', ...)``, ``memoryview``) and nested sequences of numbers.
* Outputs are NumPy arrays when NumPy is available, else nested lists.
* Callback arguments are views over the library's buffers: NumPy arrays (no copy; inputs
  read-only) or, without NumPy, ``memoryview`` objects of the same shape.

``np`` is looked up at call time, so setting ``teacher._arrays.np = None`` (or the
environment variable ``TEACHER_NUMPY=0`` before import) selects the standard-library path.
"""
import ctypes
import os

try:
    if os.environ.get("TEACHER_NUMPY", "1") in ("0", "no", "false", "off"):
        raise ImportError("disabled by TEACHER_NUMPY")
    import numpy as np
except ImportError:
    np = None

# kind -> (ctypes type, memoryview format, NumPy dtype string)
KINDS = {
    "i4": (ctypes.c_int32, "i", "<i4"),
    "u4": (ctypes.c_uint32, "I", "<u4"),
    "u1": (ctypes.c_uint8, "B", "|u1"),
    "f4": (ctypes.c_float, "f", "<f4"),
    "f8": (ctypes.c_double, "d", "<f8"),
}
_POINTERS = {k: ctypes.POINTER(v[0]) for k, v in KINDS.items()}


def have_numpy():
    return np is not None


def _prod(shape):
    p = 1
    for s in shape:
        p *= s
    return p


# ---- views over C memory (callbacks) ----------------------------------------------------
class _Interface(object):
    """Exposes C memory to NumPy through __array_interface__ (no copy; the array's
    ``.base`` is this object)."""
    __slots__ = ("__array_interface__",)

    def __init__(self, addr, shape, typestr, readonly):
        self.__array_interface__ = {"data": (addr, readonly), "shape": shape,
                                    "typestr": typestr, "version": 3}


def view(addr, shape, kind, readonly):
    """A view of shape `shape` over C memory at `addr` (None if addr is NULL)."""
    if not addr:
        return None
    ctype, fmt, typestr = KINDS[kind]
    if np is not None:
        return np.asarray(_Interface(addr, tuple(shape), typestr, readonly))
    count = _prod(shape)
    if count == 0:
        mv = memoryview(bytearray(0)).cast(fmt)
    else:
        mv = memoryview((ctype * count).from_address(addr)).cast("B").cast(fmt, tuple(shape))
    return mv.toreadonly() if readonly else mv


# ---- inputs ------------------------------------------------------------------------------
def _flatten(obj, out):
    try:
        it = iter(obj)
    except TypeError:
        out.append(obj)
        return
    for x in it:
        _flatten(x, out)


class In(object):
    """A C-compatible input array. ``ptr`` is passed to C; ``size`` is the element count;
    ``rows(width)`` the number of rows of width `width`."""
    __slots__ = ("ptr", "size", "_keep", "name")

    def __init__(self, obj, kind, name):
        self.name = name
        ctype, fmt, typestr = KINDS[kind]
        if np is not None:
            a = np.asarray(obj)
            want = np.dtype(typestr)
            if a.dtype != want:
                if want.kind in "iu" and a.dtype.kind in "iub":
                    info = np.iinfo(want)
                    if a.size and a.dtype.kind != "b" and (a.min() < info.min or
                                                           a.max() > info.max):
                        raise OverflowError("%s: values out of the range of %s"
                                            % (name, want))
                    a = a.astype(want)
                elif want.kind == "f" and a.dtype.kind in "iubf":
                    a = a.astype(want)
                else:
                    raise TypeError("%s: expected %s values, got an array of %s"
                                    % (name, want, a.dtype))
            a = np.ascontiguousarray(a)
            self._keep = a
            self.size = int(a.size)
            self.ptr = a.ctypes.data_as(_POINTERS[kind])
            return
        if not isinstance(obj, (list, tuple)):
            try:
                mv = memoryview(obj)
            except TypeError:
                mv = None
            if mv is not None and mv.c_contiguous and mv.format.lstrip("<=@") == fmt \
                    and mv.itemsize == ctypes.sizeof(ctype):
                n = mv.nbytes // mv.itemsize
                if mv.readonly:
                    arr = (ctype * n).from_buffer_copy(mv)
                else:
                    arr = (ctype * n).from_buffer(mv.cast("B"))
                self._keep = (arr, mv)
                self.size = n
                self.ptr = ctypes.cast(arr, _POINTERS[kind])
                return
        flat = []
        _flatten(obj, flat)
        arr = (ctype * len(flat))(*flat)
        self._keep = arr
        self.size = len(flat)
        self.ptr = ctypes.cast(arr, _POINTERS[kind])

    def rows(self, width):
        if width <= 0 or self.size % width:
            raise ValueError("%s: %d values is not a whole number of rows of %d"
                             % (self.name, self.size, width))
        return self.size // width

    def expect(self, count):
        if self.size != count:
            raise ValueError("%s: expected %d values, got %d" % (self.name, count, self.size))
        return self


def in_opt(obj, kind, name):
    return None if obj is None else In(obj, kind, name)


def ptr(x):
    """The C pointer of an In/Out (None -> NULL)."""
    return None if x is None else x.ptr


# ---- outputs -----------------------------------------------------------------------------
class Out(object):
    """A C-writable output array of a given shape; ``value()`` gives the NumPy array, or
    without NumPy a nested list."""
    __slots__ = ("ptr", "shape", "kind", "_arr")

    def __init__(self, shape, kind):
        self.shape = tuple(int(s) for s in shape)
        self.kind = kind
        ctype, fmt, typestr = KINDS[kind]
        if np is not None:
            self._arr = np.empty(self.shape, dtype=np.dtype(typestr))
            self.ptr = self._arr.ctypes.data_as(_POINTERS[kind])
        else:
            self._arr = (ctype * max(1, _prod(self.shape)))()
            self.ptr = ctypes.cast(self._arr, _POINTERS[kind])

    def value(self):
        if np is not None:
            return self._arr
        ctype, fmt, typestr = KINDS[self.kind]
        if _prod(self.shape) == 0:
            return [] if self.shape and self.shape[0] == 0 else _empty_nested(self.shape)
        if not self.shape:
            return self._arr[0]
        return memoryview(self._arr).cast("B").cast(fmt, self.shape).tolist()


def _empty_nested(shape):
    if len(shape) == 1 or shape[0] == 0:
        return [] if shape[0] == 0 else [[] for _ in range(shape[0])]
    return [_empty_nested(shape[1:]) for _ in range(shape[0])]
