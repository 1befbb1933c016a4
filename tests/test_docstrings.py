"""Every public class and function of dlkit has a docstring with the sections its signature calls for.

Google style, as optax and Keras write it: ``Args:`` names every parameter (``name:`` at the start
of a line; for a class, its constructor's arguments, less Flax's ``parent`` and ``name`` of a Linen
module; for a Linen layer also its call arguments, in ``Args:`` or ``Call arguments:`` of the class
or of the method), and whatever returns a value has ``Returns:`` (or ``Yields:``). Public methods
and properties of public classes are checked too, those inherited from private bases included; an
inherited docstring counts.

An object that is not ours cannot carry our docstring: a foreign callable bound at module level
(``glorot_uniform = flax.linen.initializers.glorot_uniform()``) must be named in the module's
docstring, and a method a foreign decorator adds (``flax.struct``'s ``replace``) in the class's.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import textwrap

import flax.linen as nn
import pytest

import dlkit
from dlkit.layers.base import Layer

SECTION = re.compile(r"^\s*(Args|Arguments|Call arguments|Returns|Yields|Raises|Attributes|Examples?|Notes?|"
                     r"References?)\s*:\s*$")
LINEN_FIELDS = {"parent", "name"}  # Flax's own fields of every Linen module
LINEN_CALLS = {"call", "__call__", "setup"}  # a layer's call is checked with its class


def _public(name: str) -> bool:
    return not name.startswith("_")


MODULES = ["dlkit"] + sorted(info.name for info in pkgutil.walk_packages(dlkit.__path__, "dlkit.")
                             if all(_public(part) for part in info.name.split(".")))


def sections(doc: str) -> dict:
    """``{'Args': text, 'Returns': text, ...}`` of a docstring; the text before the first header is ``''``."""
    found, current = {"": []}, ""
    for line in doc.splitlines():
        header = SECTION.match(line)
        if header:
            current = header.group(1)
            found.setdefault(current, [])
        else:
            found[current].append(line)
    return {key: "\n".join(lines) for key, lines in found.items()}


def names(text: str, param: str) -> bool:
    """Whether ``text`` has an entry ``param:`` (or ``*param:``, ``param (type):``) starting a line."""
    return re.search(rf"^\s*\*{{0,2}}{re.escape(param)}\b[^:\n]*:", text, re.M) is not None


def parameters(fn, skip=frozenset({"self", "cls"})) -> list:
    """The names of ``fn``'s parameters (a class's: its constructor's), less ``skip``."""
    try:
        return [name for name in inspect.signature(fn).parameters if name not in skip]
    except (TypeError, ValueError):
        return []


def returns_value(fn) -> bool:
    """Whether ``fn``'s own body (nested functions aside) has ``return <value>`` or ``yield``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(inspect.unwrap(fn))))
    except (OSError, TypeError, SyntaxError):
        return False
    todo = list(ast.iter_child_nodes(tree.body[0]))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom)) or (
                isinstance(node, ast.Return) and node.value is not None
                and not (isinstance(node.value, ast.Constant) and node.value.value is None)):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            todo += ast.iter_child_nodes(node)
    return False


def function_problems(fn, doc=None) -> list:
    """What a function's (or method's) docstring lacks: itself, ``Args:`` entries, ``Returns:``."""
    doc = inspect.getdoc(fn) if doc is None else doc
    if not doc:
        return ["no docstring"]
    found = sections(doc)
    problems = [f"Args: does not name {p!r}" for p in parameters(fn) if not names(found.get("Args", ""), p)]
    if returns_value(fn) and not {"Returns", "Yields"} & set(found):
        problems.append("returns a value but has no Returns: section")
    return problems


def linen_call(cls):
    """A Linen module's call: the most derived ``call`` or ``__call__`` that is not Flax's, nor the
    generic one of ``Layer`` for a subclass that does not define its own."""
    for klass in cls.__mro__:
        if (klass is Layer and cls is not Layer) or klass.__module__.startswith("flax."):
            return None
        for name in ("call", "__call__"):
            if name in vars(klass):
                return getattr(cls, name)
    return None


def class_problems(cls) -> list:
    """``(name, problem)`` for what a class's docstring lacks (constructor and call arguments), then
    for each public member's (named ``Class.member`` after the class that defines it)."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return [(cls.__name__, "no docstring of its own")]
    found = sections(inspect.cleandoc(doc))
    linen = issubclass(cls, nn.Module)
    skip = {"self"} | (LINEN_FIELDS if linen else set())
    problems = [f"Args: does not name constructor argument {p!r}" for p in parameters(cls, skip)
                if not names(found.get("Args", ""), p)]
    call = linen_call(cls) if linen else None
    if call is not None:
        method = sections(inspect.getdoc(call) or "")
        both = {key: found.get(key, "") + "\n" + method.get(key, "") for key in set(found) | set(method)}
        text = both.get("Call arguments", "") + "\n" + both.get("Args", "")
        problems += [f"call argument {p!r} not in Call arguments:/Args:" for p in parameters(call)
                     if not names(text, p)]
        if returns_value(call) and not {"Returns", "Yields"} & set(both):
            problems.append("call returns a value but has no Returns: section")
    return [(cls.__name__, problem) for problem in problems] + list(member_problems(cls))


def member_problems(cls):
    """``(Class.member, problem)`` for the public methods and properties of ``cls`` and of its private
    dlkit bases; those of public bases are checked with them."""
    seen = set()
    for klass in cls.__mro__:
        ours = klass is cls or (not _public(klass.__name__) and klass.__module__.startswith("dlkit"))
        for name, member in vars(klass).items():
            if name in seen or not (_public(name) or name == "__call__"):
                continue
            seen.add(name)
            if not ours or (issubclass(cls, nn.Module) and name in LINEN_CALLS):
                continue
            label = f"{klass.__name__}.{name}"
            if isinstance(member, property):
                if not inspect.getdoc(member):
                    yield label, "property without docstring"
                continue
            fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
            if not (inspect.isfunction(fn) or hasattr(fn, "__wrapped__")):
                continue
            if not getattr(fn, "__module__", "").startswith("dlkit"):
                if not re.search(rf"\b{re.escape(name)}\b", klass.__doc__ or ""):
                    yield label, f"method added by {fn.__module__}: not named in the class docstring"
                continue
            yield from ((label, problem) for problem in function_problems(getattr(cls, name)))


def own_names(module) -> list:
    """The public names a module binds itself (definitions and assignments) or exports in ``__all__``."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        tree = ast.Module(body=[], type_ignores=[])
    bound = set(getattr(module, "__all__", ()))
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound |= {target.id for target in targets if isinstance(target, ast.Name)}
    return sorted(name for name in bound if _public(name) and hasattr(module, name))


def module_problems(module) -> list:
    """``(name, problem)`` for every public class and function whose home is ``module``."""
    problems = []
    for name in own_names(module):
        obj = getattr(module, name)
        if inspect.ismodule(obj) or not callable(obj):
            continue
        home = getattr(obj, "__module__", None) or ""
        if not home.startswith("dlkit"):
            if not re.search(rf"\b{re.escape(name)}\b", module.__doc__ or ""):
                problems.append((name, "foreign object: not named in the module docstring"))
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj) or hasattr(obj, "__wrapped__")):
            continue  # an instance of a dlkit class: documented by its class
        if home != module.__name__ and all(_public(part) for part in home.split(".")):
            continue  # a re-export: checked in its home module
        problems += class_problems(obj) if inspect.isclass(obj) else [(name, p) for p in function_problems(obj)]
    return list(dict.fromkeys(problems))  # a private base's problems once, not once per subclass


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_are_documented(module_name):
    problems = module_problems(importlib.import_module(module_name))
    assert not problems, f"{module_name}:\n" + "\n".join(f"  {name}: {problem}" for name, problem in problems)


def test_every_module_is_checked():
    assert {"dlkit.initializers", "dlkit.layers.core", "dlkit.metrics.base", "dlkit.training.trainer"} <= set(MODULES)
    assert not any("._" in name for name in MODULES)


def _incomplete(x, y):
    """A function whose docstring forgets ``y`` and its return value.

    Args:
      x: documented.
    """
    return x + y


def _complete(x, *values, **options):
    """A function whose docstring has what it needs.

    Args:
      x: documented.
      *values: documented.
      **options: documented.

    Yields:
      ``x``.
    """
    yield x


class _Dense(nn.Module):
    """A Linen layer whose docstring names ``units``, not its field ``features``, and forgets its
    call's ``training`` and return value.

    Args:
      units: a field it does not have.

    Call arguments:
      inputs: a batch.
    """

    features: int = 1

    def __call__(self, inputs, training: bool = False):
        return inputs


def test_the_checker_finds_missing_sections():
    assert function_problems(_incomplete) == ["Args: does not name 'y'", "returns a value but has no Returns: section"]
    assert function_problems(_complete) == []
    assert function_problems(lambda: None) == ["no docstring"]
    assert [problem for _, problem in class_problems(_Dense)] == [
        "Args: does not name constructor argument 'features'",
        "call argument 'training' not in Call arguments:/Args:",
        "call returns a value but has no Returns: section"]
    assert linen_call(Layer) is Layer.call  # checked with Layer, not again with each subclass
