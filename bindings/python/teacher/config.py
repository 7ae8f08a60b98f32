"""teacher.Config: the typed key/value configuration (tch_config)."""
import collections
import ctypes
import operator
import os
import tempfile

from . import _ffi
from ._errors import call, ConfigError
from ._handle import Handle

__all__ = ["Config", "KeyInfo", "PARAM_INT", "PARAM_DOUBLE", "PARAM_BOOL", "PARAM_STRING",
           "PARAM_ENUM"]

PARAM_INT = 1
PARAM_DOUBLE = 2
PARAM_BOOL = 3
PARAM_STRING = 4
PARAM_ENUM = 5
_TYPE_NAMES = {PARAM_INT: "int", PARAM_DOUBLE: "double", PARAM_BOOL: "bool",
               PARAM_STRING: "string", PARAM_ENUM: "enum"}

#: What tch_config_describe says about a key. ``type`` is "int", "double", "bool",
#: "string" or "enum"; ``choices`` a list (enum keys only); min/max for int and double keys.
KeyInfo = collections.namedtuple("KeyInfo", "key type default min max choices doc")

_describe_cache = {}


def _describe(key):
    info = _describe_cache.get(key)
    if info is not None:
        return info
    t = ctypes.c_int()
    default, choices, doc = ctypes.c_char_p(), ctypes.c_char_p(), ctypes.c_char_p()
    lo, hi = ctypes.c_double(), ctypes.c_double()
    call(_ffi.tch_config_describe, _ffi.encode(key), ctypes.byref(t), ctypes.byref(default),
         ctypes.byref(lo), ctypes.byref(hi), ctypes.byref(choices), ctypes.byref(doc))
    ch = _ffi.decode(choices.value) or ""
    numeric = t.value in (PARAM_INT, PARAM_DOUBLE)
    info = KeyInfo(key, _TYPE_NAMES.get(t.value, str(t.value)), _ffi.decode(default.value),
                   lo.value if numeric else None, hi.value if numeric else None,
                   ch.split("|") if ch else [], _ffi.decode(doc.value))
    _describe_cache[key] = info
    return info


def _flatten(mapping, prefix, out):
    for k, v in mapping.items():
        key = "%s.%s" % (prefix, k) if prefix else str(k)
        if isinstance(v, collections.abc.Mapping):
            _flatten(v, key, out)
        else:
            out.append((key, v))
    return out


class Config(Handle):
    """Every libteacher setting under dotted keys ("teacher.reward.C"); see docs/config.md.

    ``Config()`` holds every key at its default. ``Config({"student": {"lr": 1e-3},
    "nn.hidden_dim": 64})`` sets values from a mapping with nested and/or dotted keys.
    Values are validated by the library (type and range): errors raise ConfigError.
    """
    _c_free = staticmethod(_ffi.tch_config_free)
    _c_retain = staticmethod(_ffi.tch_config_retain)
    _kind = "Config"

    def __init__(self, values=None):
        h = _ffi.config_p()
        call(_ffi.tch_config_create, ctypes.byref(h))
        self._init_handle(h)
        if values is not None:
            self.update(values)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path):
        """A config with every key at its default, then the values of a YAML file."""
        c = cls()
        c.load_yaml(path)
        return c

    @classmethod
    def from_yaml_string(cls, text):
        c = cls()
        c.load_yaml_string(text)
        return c

    @classmethod
    def coerce(cls, obj):
        """None -> None, Config -> itself, mapping -> Config(mapping), str/PathLike of a
        YAML file -> Config.from_yaml(path)."""
        if obj is None or isinstance(obj, Config):
            return obj
        if isinstance(obj, collections.abc.Mapping):
            return cls(obj)
        if isinstance(obj, (str, bytes, os.PathLike)):
            return cls.from_yaml(obj)
        raise TypeError("expected a teacher.Config, a mapping or a YAML path, got %r"
                        % type(obj).__name__)

    def load_yaml(self, path):
        """Applies a YAML file (all or nothing; errors carry file:line:column)."""
        call(_ffi.tch_config_load_yaml, self._ptr, _ffi.encode_path(path))
        return self

    def load_yaml_string(self, text):
        b = _ffi.encode(text)
        call(_ffi.tch_config_load_yaml_string, self._ptr, b, len(b))
        return self

    def to_yaml(self, path=None):
        """Writes every key as YAML to `path` (atomically); with no path returns the text."""
        if path is not None:
            call(_ffi.tch_config_dump_yaml, self._ptr, _ffi.encode_path(path))
            return None
        fd, tmp = tempfile.mkstemp(prefix="teacher-config-", suffix=".yaml")
        os.close(fd)
        try:
            call(_ffi.tch_config_dump_yaml, self._ptr, _ffi.encode_path(tmp))
            with open(tmp, "r", encoding="utf-8") as f:
                return f.read()
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    def copy(self):
        """An independent copy (tch_config_clone)."""
        h = _ffi.config_p()
        call(_ffi.tch_config_clone, self._ptr, ctypes.byref(h))
        return Config._own(h)

    __copy__ = copy

    # ---- values --------------------------------------------------------------------------
    @staticmethod
    def describe(key):
        """KeyInfo for a key (ConfigError if the key does not exist)."""
        return _describe(key)

    @staticmethod
    def keys():
        """Every key, in the parameter table's order."""
        out, prev = [], None
        while True:
            k = _ffi.tch_config_next_key(prev)
            if k is None:
                return out
            out.append(k.decode())
            prev = k

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())

    def __contains__(self, key):
        try:
            _describe(key)
            return True
        except ConfigError:
            return False

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def to_dict(self, nested=False):
        """{dotted key: value}, or nested dicts with nested=True."""
        if not nested:
            return dict(self.items())
        out = {}
        for k, v in self.items():
            d = out
            parts = k.split(".")
            for p in parts[:-1]:
                d = d.setdefault(p, {})
            d[parts[-1]] = v
        return out

    def get(self, key, default=None):
        if key not in self:
            return default
        return self[key]

    def __getitem__(self, key):
        info = _describe(key)
        k = _ffi.encode(key)
        if info.type == "int":
            v = ctypes.c_int64()
            call(_ffi.tch_config_get_int, self._ptr, k, ctypes.byref(v))
            return v.value
        if info.type == "double":
            v = ctypes.c_double()
            call(_ffi.tch_config_get_double, self._ptr, k, ctypes.byref(v))
            return v.value
        if info.type == "bool":
            v = ctypes.c_int()
            call(_ffi.tch_config_get_bool, self._ptr, k, ctypes.byref(v))
            return bool(v.value)
        v = ctypes.c_char_p()
        call(_ffi.tch_config_get_string, self._ptr, k, ctypes.byref(v))
        return _ffi.decode(v.value)

    def __setitem__(self, key, value):
        info = _describe(key)
        h, k = self._ptr, _ffi.encode(key)
        if isinstance(value, (str, bytes)) and info.type in ("int", "double", "bool"):
            call(_ffi.tch_config_set_from_string, h, k, _ffi.encode(value))
        elif info.type in ("string", "enum"):
            if not isinstance(value, (str, bytes)):
                raise TypeError("config key %r is a %s: expected a string, got %r"
                                % (key, info.type, type(value).__name__))
            call(_ffi.tch_config_set_string, h, k, _ffi.encode(value))
        elif info.type == "bool":
            if value in (0, 1):   # True/False, 0/1, NumPy bools
                call(_ffi.tch_config_set_bool, h, k, int(value))
            else:
                raise TypeError("config key %r is a bool: expected True/False, got %r"
                                % (key, value))
        elif info.type == "int":
            try:
                iv = operator.index(value)
            except TypeError:
                if isinstance(value, float) and value.is_integer():
                    iv = int(value)
                else:
                    raise TypeError("config key %r is an int: got %r" % (key, value)) from None
            call(_ffi.tch_config_set_int, h, k, iv)
        else:
            call(_ffi.tch_config_set_double, h, k, float(value))

    def set(self, key, value):
        self[key] = value
        return self

    def update(self, values=(), **kw):
        """Sets values from a mapping with nested and/or dotted keys (or (key, value)
        pairs); keyword arguments use '__' for '.' (student__lr=1e-3)."""
        pairs = []
        if isinstance(values, collections.abc.Mapping):
            _flatten(values, "", pairs)
        else:
            pairs.extend(values)
        pairs.extend((k.replace("__", "."), v) for k, v in kw.items())
        for k, v in pairs:
            self[k] = v
        return self

    def __repr__(self):
        if self.closed:
            return "<teacher.Config (closed)>"
        return "<teacher.Config %d keys>" % len(self.keys())
