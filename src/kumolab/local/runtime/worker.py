"""One Lambda execution environment: a long-lived Python process that runs one function's handler.

Started by :mod:`kumolab.local.runtime.lambda_invoke` as ``python -I worker.py CODE_DIR HANDLER`` with the
function's environment (and nothing from kumolab on its path). Like AWS's Python runtime it imports the
handler once (the Init phase) and then serves invocations one at a time: one JSON line in on stdin
(``{"event", "context"}``), one JSON line out on the protocol pipe (``{"ok": payload}`` or
``{"error": {...}}``). What the handler prints goes to stderr, i.e. the function's log.

Errors mirror awslambdaric's bootstrap: ``Runtime.MalformedHandlerName``, ``Runtime.ImportModuleError``,
``Runtime.UserCodeSyntaxError``, ``Runtime.HandlerNotFound``; an exception from user code (at import
or in the handler) is reported with its own type name, e.g. ``KeyError`` with message ``'TABLE_NAME'``.
After an Init error the process exits, so the next invocation initialises afresh (as AWS does).
"""

import importlib
import importlib.util
import json
import os
import sys
import time
import traceback


class Fault(Exception):
    def __init__(self, error_type, message, trace=None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


class Context:
    def __init__(self, data):
        self.function_name = data["function_name"]
        self.function_version = data.get("function_version", "$LATEST")
        self.invoked_function_arn = data["invoked_function_arn"]
        self.memory_limit_in_mb = str(data["memory_limit_in_mb"])
        self.aws_request_id = data["aws_request_id"]
        self.log_group_name = data["log_group_name"]
        self.log_stream_name = data["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = data["deadline_ms"]

    def get_remaining_time_in_millis(self):
        return max(0, int(self._deadline_ms - time.time() * 1000))


def module_inside_code(modname, code_dir):
    """Raise Fault unless module ``modname`` (and each package above it) is a file inside ``code_dir``.

    The handler must be the function's own code (review C2): not the standard library (``pty.spawn``,
    ``os.system``), not an installed package, not a path outside the unpacked zip.
    """
    root = os.path.realpath(code_dir)
    parts = modname.split(".")
    if not all(p.isidentifier() for p in parts):
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler module '{modname}'")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError) as exc:
            raise Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}")  # noqa: B904
        if found is None:
            raise Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': No module named '{name}'")
        origin = found.origin
        locations = list(found.submodule_search_locations or [])
        paths = [origin] if origin and origin not in ("built-in", "frozen") else locations
        if not paths or not all(
            os.path.realpath(p) == root or os.path.realpath(p).startswith(root + os.sep) for p in paths
        ):
            raise Fault(
                "Runtime.ImportModuleError",
                f"Unable to import module '{modname}': {name} is not part of the function's code "
                f"(the local runtime runs only handlers inside the deployed package)",
            )


def load_handler(spec, code_dir="."):
    try:
        modname, fname = spec.rsplit(".", 1)
    except ValueError as exc:
        raise Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}")  # noqa: B904
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise Fault(
                "Runtime.BuiltInModuleConflict",
                f"Cannot use built-in module {modname.split('.')[0]} as a handler module",
            )
        modname = modname.replace("/", ".")
        module_inside_code(modname, code_dir)
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise Fault("Runtime.ImportModuleError", f"Unable to import module '{modname}': {exc}")  # noqa: B904
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{modname}': {exc}", trace)  # noqa: B904
    try:
        return getattr(module, fname)
    except AttributeError:
        raise Fault("Runtime.HandlerNotFound", f"Handler '{fname}' missing on module '{modname}'")  # noqa: B904


def user_error(exc):
    # The handler's frames only, as AWS reports them (not this bootstrap's own).
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
    return {
        "errorMessage": str(exc),
        "errorType": type(exc).__name__,
        "stackTrace": [line for line in traceback.format_list(frames)],
    }


def main():
    code_dir, handler_spec = sys.argv[1], sys.argv[2]
    proto = os.fdopen(os.dup(1), "w", buffering=1)  # the protocol pipe
    os.dup2(2, 1)  # the handler's print() goes to the log
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.path.insert(0, code_dir)
    os.chdir(code_dir)
    init_error = None
    try:
        handler = load_handler(handler_spec, code_dir)
    except Fault as fault:
        init_error = {"errorMessage": fault.message, "errorType": fault.error_type, "stackTrace": fault.trace}
    except Exception as exc:  # user code raised at import time
        init_error = user_error(exc)
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        ctx = Context(request["context"])
        print(f"START RequestId: {ctx.aws_request_id} Version: {ctx.function_version}", file=sys.stderr, flush=True)
        started = time.time()
        if init_error is not None:
            result = {"error": dict(init_error, requestId=ctx.aws_request_id)}
        else:
            try:
                payload = handler(request["event"], ctx)
                try:
                    result = {"ok": json.dumps(payload)}
                except (TypeError, ValueError) as exc:
                    result = {
                        "error": {
                            "errorType": "Runtime.MarshalError",
                            "requestId": ctx.aws_request_id,
                            "errorMessage": f"Unable to marshal response: {exc}",
                        }
                    }
            except Exception as exc:
                result = {"error": dict(user_error(exc), requestId=ctx.aws_request_id)}
                print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            except SystemExit as exc:
                result = {
                    "error": {
                        "errorType": "Runtime.ExitError",
                        "requestId": ctx.aws_request_id,
                        "errorMessage": f"RequestId: {ctx.aws_request_id} Error: Runtime exited with error: exit status {exc.code}",  # noqa: E501
                    }
                }
        took = (time.time() - started) * 1000
        print(f"END RequestId: {ctx.aws_request_id}", file=sys.stderr)
        print(
            f"REPORT RequestId: {ctx.aws_request_id}\tDuration: {took:.2f} ms\tMemory Size: {ctx.memory_limit_in_mb} MB",  # noqa: E501
            file=sys.stderr,
            flush=True,
        )
        proto.write(json.dumps(result) + "\n")
        if init_error is not None or "Runtime.ExitError" in json.dumps(result.get("error", {})):
            return


if __name__ == "__main__":
    main()
