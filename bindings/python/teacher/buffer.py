"""teacher.Buffer: a replay buffer of fixed-width int32 records (tch_buffer)."""
import collections
import ctypes

from . import _ffi
from ._arrays import In, Out, in_opt, ptr
from ._errors import call
from ._handle import Handle
from .policy import Trajectories, traj_outputs

__all__ = ["Buffer", "PRIORITIES"]

#: Priority modes (tch_priority), by name.
PRIORITIES = {"none": 0, "reward": 1, "loss": 2, "teacher_reward": 3}
_PRIORITY_NAMES = {v: k for k, v in PRIORITIES.items()}

#: One record in FIFO order: record (record_dim,), log_r, priority.
Record = collections.namedtuple("Record", "record log_r priority")


def _priority(p):
    if isinstance(p, str):
        try:
            return PRIORITIES[p]
        except KeyError:
            raise ValueError("unknown buffer priority %r (one of %s)"
                             % (p, ", ".join(PRIORITIES))) from None
    return int(p)


class Buffer(Handle):
    """``Buffer(record_dim, capacity, priority="none", rank_k=0.01)``: FIFO with
    de-duplication; uniform or rank-based priority sampling (see include/teacher/buffer.h).
    A trainer's buffer is available as ``trainer.buffer``."""
    _c_free = staticmethod(_ffi.tch_buffer_free)
    _c_retain = staticmethod(_ffi.tch_buffer_retain)
    _kind = "Buffer"

    def __init__(self, record_dim, capacity, priority="none", rank_k=0.01):
        h = _ffi.buffer_p()
        call(_ffi.tch_buffer_create, int(record_dim), int(capacity), _priority(priority),
             float(rank_k), ctypes.byref(h))
        self._init_handle(h)

    @property
    def record_dim(self):
        v = ctypes.c_uint32()
        call(_ffi.tch_buffer_record_dim, self._ptr, ctypes.byref(v))
        return v.value

    @property
    def capacity(self):
        v = ctypes.c_size_t()
        call(_ffi.tch_buffer_capacity, self._ptr, ctypes.byref(v))
        return v.value

    @property
    def size(self):
        v = ctypes.c_size_t()
        call(_ffi.tch_buffer_size, self._ptr, ctypes.byref(v))
        return v.value

    def __len__(self):
        return self.size

    def add(self, records, log_r, priority=None):
        """Adds n records (n, record_dim) with log-rewards (n,) and optional priorities."""
        r = In(records, "i4", "records")
        n = r.rows(self.record_dim)
        lr = In(log_r, "f8", "log_r").expect(n)
        pr = in_opt(priority, "f8", "priority")
        if pr is not None:
            pr.expect(n)
        call(_ffi.tch_buffer_add, self._ptr, n, r.ptr, lr.ptr, ptr(pr))

    def add_discrete(self, states, log_r):
        """Seeds the buffer with terminal states and their log-rewards."""
        s = In(states, "i4", "states")
        n = s.rows(self.record_dim)
        lr = In(log_r, "f8", "log_r").expect(n)
        call(_ffi.tch_buffer_add_discrete, self._ptr, n, s.ptr, lr.ptr)

    def sample(self, n, seed=0):
        """Draws n records with replacement -> (records (n, record_dim), log_r (n,))."""
        n = int(n)
        rec, lr = Out((n, self.record_dim), "i4"), Out((n,), "f8")
        call(_ffi.tch_buffer_sample, self._ptr, int(seed), n, rec.ptr, lr.ptr)
        return rec.value(), lr.value()

    def sample_trajectories(self, policy, env, n, seed=0):
        """Draws n terminal states and rebuilds a trajectory for each backward with the
        policy's P_B -> Trajectories (with log_r)."""
        n = int(n)
        states, actions, lengths = traj_outputs(env, n)
        lr = Out((n,), "f8")
        call(_ffi.tch_buffer_sample_trajectories, self._ptr, policy._ptr, env._ptr, int(seed),
             n, states.ptr, actions.ptr, lengths.ptr, lr.ptr)
        return Trajectories(states.value(), actions.value(), lengths.value(), log_r=lr.value())

    def get(self, i):
        """The i-th record in FIFO order (0 = oldest; negative indices count from the
        newest) -> Record(record, log_r, priority)."""
        size = self.size
        i = int(i)
        if i < 0:
            i += size
        if not 0 <= i < size:
            raise IndexError("buffer index out of range")
        rec = Out((self.record_dim,), "i4")
        lr, pr = ctypes.c_double(), ctypes.c_double()
        call(_ffi.tch_buffer_get, self._ptr, i, rec.ptr, ctypes.byref(lr), ctypes.byref(pr))
        return Record(rec.value(), lr.value, pr.value)

    __getitem__ = get

    def clear(self):
        call(_ffi.tch_buffer_clear, self._ptr)

    def __repr__(self):
        if self.closed:
            return "<teacher.Buffer (closed)>"
        return "<teacher.Buffer %d/%d records of %d>" % (self.size, self.capacity,
                                                        self.record_dim)
