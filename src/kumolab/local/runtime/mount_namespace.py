"""Start a Lambda worker in its own mount namespace with the function's EFS access points mounted.

``python -I mount_namespace.py --bind SOURCE:TARGET [--bind ...] -- COMMAND...`` (stdlib only, like
``worker.py``: run by :mod:`kumolab.local.runtime.lambda_invoke` for a function whose configuration has
``FileSystemConfigs``). What AWS gives such a function is an NFS mount at ``LocalMountPath`` (``/mnt/<name>``)
of the access point's root directory, visible to that function's execution environments only. The
equivalent here is a real mount, not a path rewrite:

1. ``unshare(CLONE_NEWNS)`` — a mount namespace of this process alone (as root; otherwise together with a
   user namespace that maps the caller to itself, which unprivileged users may create where the kernel
   allows it), with every mount made private so nothing propagates back to the machine;
2. a fresh, small ``tmpfs`` on ``/mnt`` (an execution environment's ``/mnt`` holds only its mounts, and the
   machine's ``/mnt`` stays untouched: no directory is created outside the namespace);
3. a bind mount of each access point's local root directory at its mount path;
4. ``exec`` of the worker, which then opens ``/mnt/<name>/...`` exactly as on AWS.

A function without ``FileSystemConfigs`` is started without this script and sees no such path. Failure
(no namespaces allowed here, a bind source missing) exits 70 with the reason on stderr (the function's log),
and the invocation fails as an EFS mount failure does on AWS.
"""

import ctypes
import os
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
EXIT_MOUNT_FAILED = 70

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source, target, fstype, flags, data=None):
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source or fstype} on {target}",
    )


def enter_namespace():
    """A private mount namespace for this process (with a user namespace when not root)."""
    if os.geteuid() == 0:
        _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    else:
        uid, gid = os.geteuid(), os.getegid()
        _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_all(binds):
    """tmpfs on /mnt, then each ``(source, target)`` bound at ``target`` (a path under /mnt)."""
    _mount("tmpfs", "/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for source, target in binds:
        if not os.path.isdir(source):
            raise OSError(2, f"the access point's directory {source} does not exist")
        os.makedirs(target, mode=0o755, exist_ok=True)
        _mount(source, target, None, MS_BIND | MS_REC)


def parse(argv):
    binds, rest = [], list(argv)
    while rest and rest[0] != "--":
        option = rest.pop(0)
        if option != "--bind" or not rest:
            raise SystemExit(f"usage: mount_namespace.py --bind SOURCE:TARGET ... -- COMMAND (got {option!r})")
        source, _, target = rest.pop(0).rpartition(":")
        if not target.startswith("/mnt/") or not source:
            raise SystemExit(f"mount_namespace.py: a mount target must be under /mnt/, not {target!r}")
        binds.append((source, target))
    if not rest[1:]:
        raise SystemExit("mount_namespace.py: no command after --")
    return binds, rest[1:]


def main():
    binds, command = parse(sys.argv[1:])
    try:
        enter_namespace()
        mount_all(binds)
    except OSError as exc:
        print(f"EFSMountFailureException: the local runtime could not mount the file system: {exc}", file=sys.stderr)
        sys.exit(EXIT_MOUNT_FAILED)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
