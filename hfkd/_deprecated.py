"""Module paths of hfkd 0.1 that moved in 0.2, kept importable for one release with a `DeprecationWarning`.

`import hfkd.teacher_cache` (or `from hfkd.teacher_cache import with_teacher_logits`) gives the module that holds
those names now, `hfkd.teacher_logits`, and warns once. An import hook instead of a stub file per old path: the
package keeps one file for its past, and the old names are the very objects of the new modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    "hfkd.teacher_cache": "hfkd.teacher_logits",
    "hfkd.tweets": "hfkd.data.tweets",
    "hfkd.finetune": "hfkd.pipelines.finetune",
    "hfkd.distill": "hfkd.pipelines.distill",
    "hfkd.report": "hfkd.evaluation",
    "hfkd.stages": "hfkd.experiment.stages",
    "hfkd.config": "hfkd",  # the argument dataclasses, each now beside its command; the package exports them all
}
"""Old module path -> the module that holds its public names now."""
REMOVED_IN = "0.3"


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(
            f"{spec.name} moved to {new} in hfkd 0.2; import it from there ({spec.name} goes away in {REMOVED_IN}).",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        pass  # the new module is already executed


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
