"""Beam's look for state and timer parameters, made once per DoFn class.

Beam asks whether a DoFn keeps user state (``userstate.get_dofn_specs``) when it applies the ParDo, when it
writes the graph for the runner, when it checks the graph, and again for every bundle the local runner runs; each
time it wraps every method of the DoFn and reads its signature with ``inspect``. A build's graph holds some 240
ParDos, each with about 30 methods (DoFn's own included): some 1,900 looks and 60,000 signatures, about 0.8 s of
CPU on every run, a third of a small rebuild's cost. The answer is a function of the class (the parameters'
defaults are class attributes), so it is kept per class.

A DoFn whose instance holds a bound method of its own (``beam.FlatMap(obj.method)`` sets ``process`` on the
instance; Beam's look counts it) is looked at anew each time, as is any class Beam's look fails on: the error
is Beam's, raised where Beam raises it.
"""

from __future__ import annotations

import threading
import types
import weakref

_lock = threading.Lock()
_installed: list[object] = []  # Beam's own function, once this module's stands in for it


def _has_own_methods(dofn: object) -> bool:
    return any(isinstance(v, types.MethodType) for v in getattr(dofn, "__dict__", {}).values())


def _specs_per_class(original):
    specs: weakref.WeakKeyDictionary[type, tuple[frozenset, frozenset]] = weakref.WeakKeyDictionary()

    def get_dofn_specs(dofn):
        if _has_own_methods(dofn):
            return original(dofn)
        cls = type(dofn)
        found = specs.get(cls)
        if found is None:
            state, timers = original(dofn)
            found = specs[cls] = (frozenset(state), frozenset(timers))
        return set(found[0]), set(found[1])  # Beam's callers get sets of their own, as from Beam

    get_dofn_specs.__wrapped__ = original
    get_dofn_specs.__doc__ = original.__doc__
    return get_dofn_specs


def install() -> None:
    """Make Beam's look per class in this process (idempotent). Beam's callers reach the function through its
    module (``userstate.get_dofn_specs``), so replacing it there serves them all; a Beam without it is left as
    it is."""
    from apache_beam.transforms import userstate

    with _lock:
        if _installed or not callable(getattr(userstate, "get_dofn_specs", None)):
            return
        original = userstate.get_dofn_specs
        userstate.get_dofn_specs = _specs_per_class(original)
        _installed.append(original)
