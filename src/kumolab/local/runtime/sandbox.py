"""What the local runtime refuses to run, whatever the emulator says (review C2).

The emulator stores configuration that anyone holding its key can change, so the runtime checks what it is
about to execute instead of trusting it:

- **Loader and interpreter variables** (:func:`denied_variables`): a function's or a container's environment
  may not set a variable that changes *what* runs rather than what the program reads: the dynamic loader's
  (``LD_*``, ``DYLD_*``, ``GCONV_PATH``, ``GLIBC_TUNABLES``, ...), the interpreters' (``PYTHON*``, ``PERL5*``,
  ``RUBY*``, ``NODE_OPTIONS``, ``JAVA_TOOL_OPTIONS``, ...), the shells' (``BASH_ENV``, ``ENV``, ``BASH_FUNC_*``,
  ``SHELLOPTS``, ``PS4``) and ``PATH`` (the runtime sets it). A function or task that sets one does not run;
  the error names the variable. AWS reserves most of these for its own runtime too.
- **Handlers** are checked by the worker itself (:mod:`.worker`: the handler's module file must be inside the
  function's unpacked code; no standard library module such as ``pty``).
- **Container programs** (:func:`check_container_program`): argv[0] is ``python``/``python3`` (this interpreter)
  and the program directory (``dockerLabels[kumolab.runtime.source]``) is inside the repository;
  (:func:`check_python_program`) what Python runs is a module (``-m``) or a script of that directory, never
  inline code (``-c``), standard input or a module from elsewhere (``-m http.server``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

DENIED_PREFIXES = (
    "LD_",
    "DYLD_",
    "PYTHON",
    "PERL5",
    "PERLLIB",
    "RUBY",
    "NODE_",
    "BASH_FUNC_",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "MALLOC_",
    "GLIBC_",
)
DENIED_NAMES = frozenset(
    {
        "PATH",
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "IFS",
        "CDPATH",
        "GCONV_PATH",
        "LOCPATH",
        "NLSPATH",
        "HOSTALIASES",
        "RESOLV_HOST_CONF",
        "OPENSSL_CONF",
        "OPENSSL_ENGINES",
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_CONFIG_GLOBAL",
        "SSL_CERT_FILE",
        "TMPDIR",
    }
)
PYTHON_NAMES = ("python", "python3")


class Refused(RuntimeError):
    """What the emulator describes is not something the local runtime runs; the message says why."""


def denied_variables(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that the runtime refuses (case-insensitive; sorted)."""
    return sorted(n for n in names if n.upper() in DENIED_NAMES or n.upper().startswith(DENIED_PREFIXES))


def check_environment(what: str, env: dict) -> None:
    """Raise :class:`Refused` when ``env`` (a function's or container's own variables) sets a denied variable."""
    denied = denied_variables(env)
    if denied:
        raise Refused(
            f"{what}: environment variable(s) {', '.join(denied)} are not allowed on the local target "
            f"(they change which program or library runs, not what the program reads); nothing was run. "
            f"Remove them from the configuration."
        )


def check_container_program(name: str, argv: list[str], source: Path, repo_root: Path) -> None:
    """argv[0] is python, and the program directory is inside the repository; else :class:`Refused`."""
    first = Path(argv[0]).name if argv else ""
    if first not in PYTHON_NAMES and not first.startswith("python3."):
        raise Refused(
            f"container {name}: the local target runs only Python container programs (argv[0] python), not {argv[0]!r}"
        )
    root = repo_root.resolve()
    if not source.resolve().is_relative_to(root) or source.resolve() == root:
        raise Refused(f"container {name}: its program directory {source} is not inside the repository {root}")


#: Interpreter options a container program may put before its module or script (none of them runs code).
PYTHON_OPTIONS = frozenset({"-u", "-B", "-O", "-OO"})


def check_python_program(name: str, args: list[str], source: Path) -> None:
    """``args`` (after ``python``) run a module or script of ``source``: ``[options] -m <module> ...`` whose
    top-level package is in ``source``, or ``[options] <script> ...`` inside it; else :class:`Refused`."""
    rest = list(args)
    while rest and rest[0] in PYTHON_OPTIONS:
        rest.pop(0)
    root = source.resolve()
    if len(rest) >= 2 and rest[0] == "-m":
        top = rest[1].split(".", 1)[0]
        if top.isidentifier() and ((root / top).is_dir() or (root / f"{top}.py").is_file()):
            return
        raise Refused(
            f"container {name}: python -m {rest[1]} is not a module of its program directory {root}; "
            f"the local target runs only the lab's own container programs"
        )
    if rest and not rest[0].startswith("-"):
        script = (root / rest[0]).resolve()
        if script.is_file() and script.is_relative_to(root):
            return
        raise Refused(f"container {name}: python {rest[0]} is not a script inside its program directory {root}")
    raise Refused(
        f"container {name}: python {' '.join(rest[:1]) or '(no program)'}: the local target runs a module (-m) or "
        f"script of the container's program directory, not inline code (-c), standard input or other options"
    )
