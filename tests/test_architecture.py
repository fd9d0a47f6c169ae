"""The package's shape: no import cycles, no hfkd import inside a function, old module paths that still import (with
a warning), and stage and cache hashes that survive moving code."""

import ast
import importlib
import os
import pathlib
import sys
import warnings

import pytest

import hfkd
from hfkd import _deprecated
from hfkd.data.arguments import DataArguments
from hfkd.distillation_config import DistillationArguments, StudentArguments
from hfkd.experiment.arguments import ExperimentArguments
from hfkd.experiment.cross_domain import finetune_arguments
from hfkd.fingerprints import content_hash, training_key
from hfkd.parser import HfkdParser
from hfkd.pipelines.finetune import ModelArguments
from hfkd.teacher_logits import cache_provenance

from .conftest import LABELS, ROOT, make_tokenizer

PACKAGE = pathlib.Path(ROOT) / "hfkd"


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(module: str, path: pathlib.Path, node: ast.ImportFrom | ast.Import, modules) -> list[str]:
    """The hfkd modules an import statement names (`from .x import y` may name the module `x.y` or a name in `x`)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
    names = [f"{base}.{a.name}" for a in node.names]
    return [n if n in modules else base for n in names if (n if n in modules else base) in modules]


def _import_graph():
    modules, edges, inside = _modules(), {}, []
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        in_functions = {
            id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) for n in ast.walk(f)
        }
        edges[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                targets = [t for t in _imported(module, path, node, modules) if t != module]
                if id(node) in in_functions and targets:
                    inside.append(f"{module}:{node.lineno} imports {targets}")
                elif id(node) not in in_functions:
                    edges[module].update(targets)
    return edges, inside


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_and_no_hfkd_import_inside_a_function():
    edges, inside = _import_graph()
    assert len(edges) > 30 and "hfkd.trainer" in edges["hfkd"]  # the graph was read
    assert _cycles(edges) == []
    assert inside == []


def test_cycle_finder_finds_a_cycle():
    # the check above can fail: a two-module cycle and a longer one are found, a chain is not
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


MOVED_CASES = [
    ("hfkd.teacher_cache", "hfkd.teacher_logits", "with_teacher_logits"),
    ("hfkd.tweets", "hfkd.data.tweets", "TWEET_DOMAIN_RULES"),
    ("hfkd.finetune", "hfkd.pipelines.finetune", "finetune"),
    ("hfkd.distill", "hfkd.pipelines.distill", "distill"),
    ("hfkd.report", "hfkd.evaluation", "load_results"),
    ("hfkd.stages", "hfkd.experiment.stages", "run_stage"),
    ("hfkd.config", "hfkd", "DistillationArguments"),
]


@pytest.mark.parametrize("old, new, name", MOVED_CASES)
def test_moved_module_paths_still_import_with_a_deprecation_warning(monkeypatch, old, new, name):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new} .*goes away"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_every_moved_path_is_tested():
    assert set(_deprecated.MOVED) == {old for old, _, _ in MOVED_CASES}


def test_public_api_and_version():
    assert hfkd.__version__ == importlib.metadata.version("hfkd")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the public API itself warns about nothing
        for name in hfkd.__all__:
            assert getattr(hfkd, name) is not None, name


def test_stage_and_cache_hashes_of_an_unchanged_config_are_pinned(tmp_path):
    # Reorganising the code must not change what an unchanged config's stages and caches are called: a rerun after
    # an upgrade reuses them. A change here is a deliberate format change (and a note for users).
    parser = HfkdParser((ExperimentArguments, ModelArguments, DataArguments, StudentArguments, DistillationArguments))
    exp, _, _, student_args, args = parser.parse_args_and_config(
        ["--config", os.path.join(ROOT, "configs", "experiment_tweets.yaml")]
    )
    data_key = {"sources": {"airline": "0123456789abcdef"}, "max_length": 64, "labels": LABELS}
    teacher_args = finetune_arguments(args, "", num_train_epochs=exp.teacher_num_train_epochs)
    teacher_key = {"stage": "teacher", "model": "builtin:minilm-l6", "data": data_key}
    teacher_key["training"] = training_key(teacher_args)
    student_key = training_key(student_args) | {"student_model": args.student_model_name_or_path}
    distilled_key = {"stage": "distilled", "teacher": "fedcba9876543210", "data": data_key, "student": student_key}
    distilled_key["training"] = training_key(args)
    provenance = cache_provenance(["a tweet", "another"], "fedcba9876543210", make_tokenizer(tmp_path), LABELS, 64)
    assert (content_hash(teacher_key), content_hash(distilled_key), content_hash(provenance)) == PINNED


PINNED = ("0d998c5f32", "a419a161f7", "045265173f")
