"""The device runner, as modules: what a target runs to time artifacts and return their outputs (stdlib + numpy +
one interpreter, Python 3.7+).

The host imports these modules (edgeport.runtime.engines wraps the interpreter classes); a target runs them as one
file, `device_runner.py`, that edgeport.runtime.runner_file assembles from them at ship time, in the order of
`MODULES` (each module may use only the ones before it). Every module is written so the concatenation means what the
package means: `from __future__ import annotations` in each, imports of siblings only as `from .module import
name` (no alias) at the top level, no top-level name defined twice, other imports stdlib or numpy (interpreters
inside functions), and the `__main__` guard only in the last module.
"""

MODULES = ("protocol", "interpreters", "machine", "timing", "job", "entry")
