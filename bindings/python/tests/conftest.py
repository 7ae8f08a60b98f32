"""pytest configuration: import the package from this source tree (bindings/python).

The library is found as the package documents (TEACHER_LIBRARY first); scripts/test.sh and
the meson test 'python' set TEACHER_LIBRARY to the library of their build."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))   # bindings/python -> import teacher
sys.path.insert(0, HERE)                    # bitenv helpers

import pytest  # noqa: E402


@pytest.fixture
def grid():
    import teacher
    env = teacher.Env.hypergrid(ndim=2, horizon=8, beta=1.0)
    yield env
    env.close()


def pytest_report_header(config):
    import teacher
    return "libteacher %s from %s (NumPy: %s)" % (teacher.version(), teacher.library_path,
                                                 teacher.have_numpy())
