#!/usr/bin/python3
"""ABI checks through cffi (run with Debian's /usr/bin/python3 and python3-cffi).

  layout:   the public headers, preprocessed as a cffi user would (gcc -E -P -nostdinc
            -DTCH_API= -DTCH_NO_INLINE_HELPERS with empty fake libc headers), parse with
            cffi.FFI().cdef(); cffi's sizeof/offsetof of the descriptor structs and the
            values of the pinned enums equal the C compiler's (printed by abi_layout).
  symbols:  every function declared in the public headers is exported by libteacher.so
            (cffi dlopen) and every exported tch_ function is declared.
"""
import argparse
import re
import subprocess
import sys


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def preprocess(args):
    cmd = [args.cc, "-E", "-P", "-nostdinc", "-DTCH_API=", "-DTCH_NO_INLINE_HELPERS",
           "-I" + args.fakelibc, "-I" + args.src_inc, "-I" + args.build_inc,
           args.src_inc + "/teacher.h"]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if r.returncode != 0:
        fail("preprocessing failed: %s\n%s" % (" ".join(cmd), r.stderr))
    return r.stdout


def make_ffi(text):
    try:
        import cffi
    except ImportError:
        fail("%s has no cffi module: install python3-cffi (apt-get install python3-cffi); "
             "this check must not be skipped" % sys.executable)
    ffi = cffi.FFI()
    try:
        ffi.cdef(text)
    except Exception as e:  # cffi.CDefError and pycparser errors
        numbered = "\n".join("%4d  %s" % (i + 1, l) for i, l in enumerate(text.splitlines()))
        fail("cffi cdef() rejected the preprocessed public headers: %s\n%s" % (e, numbered))
    return ffi


def check_layout(ffi, layout_exe):
    out = subprocess.run([layout_exe], stdout=subprocess.PIPE, check=True,
                         universal_newlines=True).stdout
    consts = {}
    for tname in ffi.list_types()[0]:
        t = ffi.typeof(tname)
        if t.kind == "enum":
            consts.update(t.relements)
    errors, n = [], 0
    for line in out.splitlines():
        kind, name, value = line.split()
        value = int(value)
        n += 1
        if kind == "sizeof":
            got = ffi.sizeof(name)
        elif kind == "offsetof":
            t, f = name.split(".")
            got = ffi.offsetof(t, f)
        elif kind == "const":
            if name not in consts:
                errors.append("enum constant %s is unknown to cffi" % name)
                continue
            got = consts[name]
        else:
            fail("unexpected line from %s: %r" % (layout_exe, line))
        if got != value:
            errors.append("%s %s: C says %d, cffi says %d" % (kind, name, value, got))
        else:
            print("ok  %-8s %-40s %d" % (kind, name, value))
    # Fields cffi sees that abi_layout.c does not print yet (appended fields): informative.
    for t in ("tch_discrete_env_desc", "tch_energy_desc", "tch_smc_desc", "tch_seqpa_env_desc"):
        printed = set(re.findall(r"offsetof %s\.(\w+)" % t, out))
        for fname, _ in ffi.typeof(t).fields:
            if fname not in printed:
                print("note: %s.%s is not checked by abi_layout.c" % (t, fname))
    if errors:
        fail("C and cffi disagree:\n  " + "\n  ".join(errors))
    print("cffi layout check: %d values agree" % n)


def declared_functions(text):
    # Function declarations: "tch_name(". Function-pointer typedefs read "(*tch_name)(",
    # so the name is followed by ")" and does not match.
    return sorted(set(re.findall(r"(?<!\w)(tch_\w+)\s*\(", text)))


def check_symbols(ffi, text, lib, nm):
    decl = declared_functions(text)
    if not decl:
        fail("no tch_ function declarations found in the preprocessed headers")
    try:
        so = ffi.dlopen(lib)
    except OSError as e:
        fail("cannot dlopen %s: %s" % (lib, e))
    missing = []
    for name in decl:
        try:
            getattr(so, name)
        except (AttributeError, NotImplementedError) as e:
            missing.append("%s (%s)" % (name, e))
    r = subprocess.run([nm, "-D", "--defined-only", lib], stdout=subprocess.PIPE, check=True,
                       universal_newlines=True)
    exported = set()
    for line in r.stdout.split("\n"):
        parts = line.split()
        if len(parts) >= 2 and parts[-2] in ("T", "W", "i"):
            exported.add(parts[-1].split("@")[0])
    undeclared = sorted(s for s in exported if s.startswith("tch_") and s not in decl)
    msgs = []
    if missing:
        msgs.append("declared in include/teacher/*.h but not exported by %s:\n    %s"
                    % (lib, "\n    ".join(missing)))
    if undeclared:
        msgs.append("exported by %s but declared in no public header:\n    %s"
                    % (lib, "\n    ".join(undeclared)))
    if msgs:
        fail("\n  ".join(msgs))
    print("symbol check: %d declared functions, all exported; no undeclared exports" % len(decl))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mode", choices=["layout", "symbols"])
    ap.add_argument("--cc", default="gcc")
    ap.add_argument("--nm", default="nm")
    ap.add_argument("--src-inc", required=True)
    ap.add_argument("--build-inc", required=True)
    ap.add_argument("--fakelibc", required=True)
    ap.add_argument("--layout-exe")
    ap.add_argument("--lib")
    args = ap.parse_args()
    text = preprocess(args)
    ffi = make_ffi(text)
    if args.mode == "layout":
        check_layout(ffi, args.layout_exe)
    else:
        check_symbols(ffi, text, args.lib, args.nm)


if __name__ == "__main__":
    main()
