"""bindings/python/_cdef.h: up to date with the headers, parsed by cffi, and in agreement
with the ctypes declarations of teacher._ffi (layout, enum values, every function bound).

cffi's layouts are checked against the C compiler's by tests/abi (meson test abi_cffi), so
ctypes == cffi here means ctypes == C."""
import ctypes
import os
import re
import shutil
import subprocess

import pytest

import teacher
from teacher import _ffi, _errors, config, buffer, mixer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
CDEF = os.path.join(ROOT, "bindings", "python", "_cdef.h")
GEN = os.path.join(ROOT, "scripts", "gen_cdef.sh")


def _text():
    with open(CDEF) as f:
        return f.read()


@pytest.fixture(scope="module")
def ffi():
    cffi = pytest.importorskip("cffi")
    f = cffi.FFI()
    f.cdef(_text())
    return f


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "gcc")) is None,
                    reason="needs a C preprocessor (gcc) to regenerate _cdef.h")
def test_cdef_is_up_to_date():
    r = subprocess.run(["sh", GEN, "--stdout"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == _text(), ("bindings/python/_cdef.h is stale: run scripts/gen_cdef.sh "
                                 "and check in the result")


def test_descriptor_layout_matches_cffi(ffi):
    assert ctypes.sizeof(_ffi.DiscreteEnvDesc) == ffi.sizeof("tch_discrete_env_desc")
    cffi_fields = [name for name, _ in ffi.typeof("tch_discrete_env_desc").fields]
    ctypes_fields = [f[0] for f in _ffi.DiscreteEnvDesc._fields_]
    assert ctypes_fields == cffi_fields
    for name in cffi_fields:
        assert getattr(_ffi.DiscreteEnvDesc, name).offset == \
            ffi.offsetof("tch_discrete_env_desc", name), name
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ffi.sizeof("tch_discrete_env_desc") == 104


def _enum(ffi, name):
    return dict(ffi.typeof(name).relements)


def test_enum_values_match(ffi):
    st = _enum(ffi, "tch_status")
    for cname, value in st.items():
        pyname = cname[len("TCH_"):]
        assert getattr(_errors, pyname) == value, cname
    pt = _enum(ffi, "tch_param_type")
    assert {k[len("TCH_PARAM_"):].lower(): v for k, v in pt.items()} == \
        {n: getattr(config, "PARAM_" + n.upper()) for n in ("int", "double", "bool", "string",
                                                             "enum")}
    pr = _enum(ffi, "tch_priority")
    assert {k[len("TCH_PRIORITY_"):].lower(): v for k, v in pr.items()} == buffer.PRIORITIES
    src = _enum(ffi, "tch_source")
    assert {k[len("TCH_SOURCE_"):].lower(): v for k, v in src.items()} == mixer.SOURCES


def test_every_function_is_bound():
    declared = sorted(set(re.findall(r"(?<![\w*])(tch_\w+)\s*\(", _text())))
    assert len(declared) > 50
    missing = [f for f in declared if not isinstance(getattr(_ffi, f, None), ctypes._CFuncPtr)]
    assert not missing, "C functions without a ctypes prototype in teacher/_ffi.py: %s" % missing
    for f in declared:
        assert getattr(_ffi, f).argtypes is not None, f


def test_every_function_is_wrapped():
    """Each C function is used by the high-level package (not only declared)."""
    declared = sorted(set(re.findall(r"(?<![\w*])(tch_\w+)\s*\(", _text())))
    pkg = os.path.dirname(os.path.abspath(teacher.__file__))
    src = ""
    for name in os.listdir(pkg):
        if name.endswith(".py") and name != "_ffi.py":
            with open(os.path.join(pkg, name)) as f:
                src += f.read()
    unused = [f for f in declared if not re.search(r"_ffi\.%s\b" % f, src)]
    assert not unused, "C functions the Python API does not reach: %s" % unused
