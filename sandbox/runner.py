"""The trusted code that runs inside the sandboxed child, before and after the program.

Started by sandbox/process.py as `python -I -S -B runner.py RESULT_FD` with stdlib only
(no harness imports), so it works as a plain script in a bare interpreter.

Protocol:
1. Read one JSON object {"source": str, "nonce": str} from stdin; stdin then becomes
   /dev/null (a program that reads input gets EOF, never the request).
2. Move the result pipe to a random free descriptor (not inherited across exec) and write
   {"nonce", "status": "started"}: the parent then knows the runner itself started, so a
   runner that never got this far is the sandbox's fault, not the program's.
3. Compile the source (SyntaxError, IndentationError, null bytes -> "syntax_error"), exec it
   in a fresh `__main__` module, and write one line {"nonce", "status", "detail"}:
   passed (exec returned), failed (AssertionError), memory (MemoryError), error (any other
   BaseException, SystemExit included: a program that exits never ran its tests to the end).
4. os._exit(0) at once, so the program's atexit hooks, threads and finalizers never run
   after the verdict and cannot write anything after it.

The parent accepts a record only if it carries the nonce, so stdout, exit codes and records
forged on any descriptor by the program are never evidence.

Residual risk, honestly: the program runs in this same process. The nonce is kept out of
easy reach (not in the program's namespace, not in this module's globals; only as a local of
main(), and the functions that write the record are bound as locals before the program runs,
so replacing os.write, json or builtins cannot rewrite the record), but code in the same
process can still find it by introspection: walking frames (sys._getframe().f_back.f_locals),
gc.get_referrers, ctypes, or reading /proc/self/mem. Equally, in-process code can skip the
tests that follow it (sys.settrace with frame.f_lineno jumps) and make exec return normally.
A later hardening issue moves the verdict out of reach (fork server, seccomp, tests that do
not share a process with the candidate); until then a nonce stops accidents and naive
gaming (printing "passed", sys.exit(0), os._exit(0), writing records to every descriptor),
not a determined adversary.
"""

import json
import os
import sys
from json.encoder import encode_basestring_ascii

DETAIL_CHARS = 200


def main() -> None:
    result_fd = int(sys.argv[1])
    request = json.loads(sys.stdin.buffer.read())
    source, nonce = request["source"], request["nonce"]
    _stdin_from_devnull()
    result_fd = _move_to_random_fd(result_fd)
    sys.argv[:] = [""]

    # Everything the record needs after the program ran is bound here as locals: the
    # program can replace attributes of os, json or builtins, not this frame's locals.
    write, exit_, quote = os.write, os._exit, encode_basestring_ascii
    record = '{"nonce": "' + nonce + '", "status": "%s", "detail": %s}\n'
    memory_record = (record % ("memory", quote("MemoryError"))).encode()
    broken_record = (record % ("error", quote("the program broke the runner"))).encode()
    del request, nonce
    try:
        write(result_fd, (record % ("started", '""')).encode())
        try:
            status, detail = _run(source)
            del source
            message = (record % (status, quote(detail))).encode()
        except MemoryError:  # the program may still hold the memory: use the prepared record
            message = memory_record
        except BaseException:  # the program replaced something _run relies on: never a pass
            message = broken_record
        write(result_fd, message)
    finally:
        exit_(0)


def _run(source: str) -> tuple[str, str]:
    """Compile and execute the program; return (status, detail)."""
    try:
        code = compile(source, "<program>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:  # ValueError: source with null bytes
        return "syntax_error", _describe(exc)
    module = type(sys)("__main__")  # a real __main__, so pickle and dataclasses find it
    module.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = module
    try:
        exec(code, module.__dict__)
    except AssertionError as exc:
        return "failed", _describe(exc)
    except MemoryError:
        return "memory", "MemoryError"
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and RecursionError included
        return "error", _describe(exc)
    return "passed", ""


def _describe(exc: BaseException) -> str:
    """'TypeName: first line of the message', at most DETAIL_CHARS characters."""
    try:
        name = type(exc).__name__
        if isinstance(exc, SyntaxError):
            message = f"{exc.msg} (line {exc.lineno})"
        elif isinstance(exc, SystemExit):
            message = str(exc.code)
        else:
            message = str(exc)
        message = message[: DETAIL_CHARS * 4].strip().partition("\n")[0]
        detail = f"{name}: {message}" if message else name
        return str(detail[:DETAIL_CHARS])
    except BaseException:  # a __str__ that raises must not cost the verdict
        return "unprintable exception"


def _stdin_from_devnull() -> None:
    """Replace stdin (the request pipe) with /dev/null."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _move_to_random_fd(fd: int) -> int:
    """Move the result pipe to a random free descriptor below the open-files limit.

    Not inheritable, so programs the code execs never get it; random, so it is not at the
    number the command line names. Obscurity only: the nonce is what protects the record.
    """
    limit = os.sysconf("SC_OPEN_MAX")
    low = 16 if limit > 32 else 3
    for _ in range(64):
        candidate = low + int.from_bytes(os.urandom(2), "big") % (limit - low)
        try:
            os.fstat(candidate)
        except OSError:  # free
            os.dup2(fd, candidate, inheritable=False)
            os.close(fd)
            return candidate
    os.set_inheritable(fd, False)
    return fd


if __name__ == "__main__":
    main()
