"""Base class of the handle wrappers: one C reference per Python object.

A wrapper owns exactly one reference to its C object (taken by the constructor, or by
``tch_*_retain`` for a borrowed handle) and drops it in ``close()``, at the end of a
``with`` block, or when it is garbage collected. The C objects are reference counted and
hold references to what they use (a trainer retains its env, a mixer its policies), so the
wrappers can be closed or collected in any order. ``close()`` twice is a no-op; using a
closed wrapper raises ``ValueError``.
"""
import atexit
import ctypes

from . import _errors

_finalizing = [False]


@atexit.register
def _at_exit():
    # During interpreter shutdown the objects are left to the OS: freeing an env there
    # would run its Python user_free thunk while modules are being torn down.
    _finalizing[0] = True


class Handle(object):
    _c_free = None      # tch_x_free
    _c_retain = None    # tch_x_retain
    _kind = "handle"

    __slots__ = ("_h", "_owner", "_addr", "__weakref__")

    def _init_handle(self, ptr, owner=None):
        self._h = ptr
        self._owner = owner
        self._addr = ctypes.cast(ptr, ctypes.c_void_p).value or 0

    @classmethod
    def _own(cls, ptr, owner=None):
        """Wraps a pointer whose reference the caller hands over."""
        obj = cls.__new__(cls)
        Handle._init_handle(obj, ptr, owner)
        obj._post_init()
        return obj

    @classmethod
    def _borrow(cls, ptr, owner=None):
        """Wraps a borrowed pointer: takes a reference of its own (tch_x_retain), and keeps
        `owner` (the Python wrapper it was borrowed from) alive as well."""
        cls._c_retain(ptr)
        return cls._own(ptr, owner)

    def _post_init(self):
        pass

    @property
    def _ptr(self):
        h = getattr(self, "_h", None)
        if not h:
            raise ValueError("teacher: operation on a closed %s" % self._kind)
        return h

    @property
    def closed(self):
        return not getattr(self, "_h", None)

    def close(self):
        """Drops this wrapper's reference to the C object (a no-op if already closed)."""
        h = getattr(self, "_h", None)
        self._h = None
        self._owner = None
        self._on_close()
        if h and not _finalizing[0]:
            _errors.call_noexcept(type(self)._c_free, h)

    def _on_close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # pragma: no cover - never raise from __del__
            pass

    def __repr__(self):
        if self.closed:
            return "<teacher.%s (closed)>" % type(self).__name__
        return "<teacher.%s at 0x%x>" % (type(self).__name__, self._address())

    def _address(self):
        return self._addr

    def __eq__(self, other):
        """Two open wrappers are equal when they refer to the same C object."""
        if not isinstance(other, Handle) or type(other) is not type(self):
            return NotImplemented
        if self.closed or other.closed:
            return self is other
        return self._addr == other._addr

    def __hash__(self):
        return hash(getattr(self, "_addr", id(self)))
