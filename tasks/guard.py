"""The return-value guard: a candidate passes only with plain built-in values.

A model can "pass" `assert candidate(x) == 3` by returning an object whose __eq__ is always
true. The guard wraps the candidate so that every value it returns is checked, by exact type
(subclasses of int, str, ... can override __eq__ too), before the tests compare it.

The guard is defined after the candidate's code in the program, so the candidate cannot
define it away, and it reaches the built-in types through literals (`().__class__.__class__`
is `type`), so patching the `builtins` module does not fool it. What remains open is code
that patches interpreter internals (ctypes): that is the sandbox's business (sandbox/).
frozenset has no literal and is not accepted.
"""

GUARD = """
def __harness_guard(candidate):
    kind_of = ().__class__.__class__
    plain = (kind_of(True), kind_of(0), kind_of(0.0), kind_of(0j), kind_of(""), kind_of(b""), kind_of(None))
    containers = (kind_of([]), kind_of(()), kind_of({0}))
    mapping = kind_of({})

    def check(value):
        kind = kind_of(value)
        # Identity, never ==: a metaclass can make a class compare equal to int.
        for allowed in plain:
            if kind is allowed:
                return
        for container in containers:
            if kind is container:
                for item in value:
                    check(item)
                return
        if kind is mapping:
            for key, item in value.items():
                check(key)
                check(item)
            return
        raise TypeError(f"the candidate returned a {kind.__name__}, not a plain built-in value")

    def guarded(*args, **kwargs):
        result = candidate(*args, **kwargs)
        check(result)
        return result

    return guarded
"""


def guarded_check(check: str, entry_point: str) -> str:
    """Program text that runs the tests' `check` on the guarded candidate."""
    return f"{GUARD}\n{check}(__harness_guard({entry_point}))\n"
