"""Library loading, versions, the exception hierarchy, descriptor layout."""
import ctypes
import os
import subprocess
import sys

import pytest

import teacher
from teacher import _ffi, _errors

PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(teacher.__file__)))


def test_version_and_abi():
    assert teacher.abi_version() == 0
    assert teacher.version_number() >= _ffi.REQUIRED_VERSION
    major, minor, patch = (int(x) for x in teacher.version().split("."))
    assert teacher.version_number() == major * 10000 + minor * 100 + patch
    assert os.path.basename(teacher.library_path).startswith("libteacher.so")


def test_descriptor_size():
    # tch_discrete_env_desc is 104 bytes on LP64 (x86-64, arm64); test_cdef.py also
    # compares every field offset with cffi's layout of the C declaration.
    if ctypes.sizeof(ctypes.c_void_p) == 8:
        assert ctypes.sizeof(teacher.DiscreteEnvDesc) == 104


def test_status_strings_and_classes():
    assert teacher.status_str(0) == "success"
    cases = [(-1, teacher.ArgumentError, ValueError), (-2, teacher.OutOfMemoryError, MemoryError),
             (-3, teacher.StateError, teacher.TeacherError), (-4, teacher.ConfigError, ValueError),
             (-5, teacher.CallbackError, teacher.TeacherError),
             (-6, teacher.NumericError, ArithmeticError), (-7, teacher.FileFormatError, OSError),
             (-8, teacher.VersionError, teacher.TeacherError),
             (-9, teacher.InternalError, teacher.TeacherError)]
    for status, cls, base in cases:
        e = _errors.error_for(status, "detail %d" % status)
        assert type(e) is cls and isinstance(e, base) and isinstance(e, teacher.TeacherError)
        assert e.status == status and e.message == "detail %d" % status
        assert e.status_name.startswith("TCH_E_")
        assert "detail %d" % status in str(e)
        assert teacher.status_str(status) not in ("", "unknown status")


def test_argument_error_carries_last_error():
    with pytest.raises(teacher.ArgumentError) as ei:
        teacher.Env.hypergrid(ndim=0, horizon=8)
    assert ei.value.status == -1 and ei.value.status_name == "TCH_E_ARG"
    assert ei.value.message   # tch_last_error() text


def test_missing_file_is_file_format_error(tmp_path):
    with pytest.raises(teacher.FileFormatError) as ei:
        teacher.Policy.load(tmp_path / "nope.tchp")
    assert "nope.tchp" in ei.value.message


def _run(code, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-c", code], cwd=PKG_DIR, env=e,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)


def test_import_uses_only_the_standard_library():
    # NumPy made unimportable: the package still imports and works (lists path).
    r = _run("import sys; sys.modules['numpy'] = None\n"
             "import teacher\n"
             "assert not teacher.have_numpy()\n"
             "assert [m for m, v in sys.modules.items() if v is not None and m.split('.')[0] in ('numpy', 'cffi')] == []\n"
             "env = teacher.Env.hypergrid(2, 8)\n"
             "p = teacher.Policy(env, {'nn.hidden_dim': 16}, seed=1)\n"
             "s = p.sample(4, seed=2)\n"
             "assert isinstance(s.states, list) and len(s.states) == 4 and len(s.states[0]) == 2\n"
             "print('ok')\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_library_lookup_errors():
    r = _run("import teacher", env={"TEACHER_LIBRARY": "/nonexistent/libteacher.so.0"})
    assert r.returncode != 0
    assert "TEACHER_LIBRARY" in r.stderr and "/nonexistent/libteacher.so.0" in r.stderr


def test_library_lookup_folder():
    folder = os.path.dirname(os.path.abspath(teacher.library_path))
    r = _run("import teacher; print(teacher.library_path)", env={"TEACHER_LIBRARY": folder})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == os.path.join(folder, "libteacher.so.0")


def test_log_callback_does_not_break():
    msgs = []
    teacher.set_log_callback(lambda level, msg: msgs.append((level, msg)), max_level=3)
    try:
        env = teacher.Env.hypergrid(2, 8)
        tr = teacher.Trainer(env, {"nn.hidden_dim": 16})
        tr.step(2)
    finally:
        teacher.set_log_callback(None)
    assert all(isinstance(l, int) and isinstance(m, str) for l, m in msgs)
