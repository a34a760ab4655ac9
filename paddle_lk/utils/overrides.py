"""``-o key.path=value`` overrides: one parser and one applier for classification, PaddleSeg and
PaddleDetection configs.

Values are typed as PaddleClas's ``-o`` types them (``ppcls/utils/config.py`` evaluates the text as a
Python expression): ``1e-3`` is a float, ``[1,2]`` a list, ``True`` a bool, ``1.0/255.0`` a float, any
other text a string; YAML's ``null``/``true``/``false`` are understood too. The evaluation is safe:
only literals and arithmetic on numbers, never names or calls. Paths are dotted; an integer part
indexes a list; a part may also name an attribute of a YAML-tagged object (PaddleDetection's
``TrainDataset: !COCODataSet``). What a path may create is decided by a ``check`` callback per config
kind (a schema for classification, the toolkit's registered components for PaddleSeg/PaddleDetection),
so a typo is an error naming the full key path and the nearest valid key, for every kind alike.
"""
from __future__ import annotations

import ast
import copy
import operator
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

import yaml

from ..errors import ConfigError, closest

__all__ = ["parse_value", "parse_override", "apply_overrides", "unknown_key_error", "Override", "CheckFn"]

Override = Tuple[List[str], Any, str]  # (path parts, typed value, original text)
# check(parts_so_far, container, key) -> None, or raise ConfigError: may `key` be created in `container`?
CheckFn = Callable[[List[str], Any, str], None]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNOPS = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _safe_eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_safe_eval(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        return {_safe_eval(k): _safe_eval(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNOPS:
        value = _safe_eval(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _UNOPS[type(node.op)](value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _safe_eval(node.left), _safe_eval(node.right)
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b)):
            if type(node.op) is ast.Pow and abs(b) > 64:
                raise ValueError("exponent too large")
            return _BINOPS[type(node.op)](a, b)
    raise ValueError("not a literal")


def parse_value(text: str) -> Any:
    """The typed value of an override's right-hand side (see the module docstring)."""
    stripped = text.strip()
    if not stripped:
        return ""
    try:
        return _safe_eval(ast.parse(stripped, mode="eval").body)
    except (ValueError, SyntaxError, TypeError, ZeroDivisionError, RecursionError):
        pass
    try:
        value = yaml.safe_load(stripped)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 keeps '1e-3' (no dot) as a string
        except ValueError:
            return value
    return value


def parse_override(item: str) -> Override:
    """``"a.b.0.c=value"`` -> ``(["a", "b", "0", "c"], typed value, item)``; ConfigError if malformed."""
    if "=" not in item:
        raise ConfigError(f"-o {item}: expected Section.key=value (a dotted key path, then = and the value)")
    path, text = item.split("=", 1)
    parts = path.strip().split(".")
    if not path.strip() or not all(parts):
        raise ConfigError(f"-o {item}: empty key or empty part in '{path}'")
    return parts, parse_value(text), item


def unknown_key_error(path: str, key: str, valid: Iterable[str], where: str = "") -> ConfigError:
    """The error for an unknown key: its full path and the closest valid key (or the valid keys)."""
    valid = sorted(str(v) for v in valid)
    close = closest(key, valid, n=1)
    full = f"{path}.{key}" if path else key
    hint = f"; did you mean '{(path + '.') if path else ''}{close[0]}'?" if close else ""
    listed = ", ".join(valid[:25]) + (", ..." if len(valid) > 25 else "")
    return ConfigError(f"{where}unknown config key '{full}'{hint} (valid keys here: {listed})")


def _index(node: list, part: str, item: str, where: str) -> int:
    if not part.lstrip("-").isdigit():
        raise ConfigError(f"-o {item}: '{where}' is a list of {len(node)} items, '{part}' is not an index")
    i = int(part)
    if not -len(node) <= i < len(node):
        raise ConfigError(f"-o {item}: '{where}' is a list of {len(node)} items, index {i} is out of range")
    return i


def _has(node: Any, key: str) -> bool:
    return key in node if isinstance(node, dict) else hasattr(node, key) and not key.startswith("_")


def apply_overrides(cfg: Any, overrides: Optional[Sequence[str]], check: Optional[CheckFn] = None,
                    copy_cfg: bool = True) -> Any:
    """Apply ``key.path=value`` overrides to ``cfg`` (dicts, lists, objects with attributes).

    An existing key is always set; a missing one is created only when ``check(parts, container, key)``
    allows it (no ``check``: always, as PaddleClas does; missing intermediate dicts are created too).

    Raises:
        ConfigError naming the override, the key path and the nearest valid key.
    """
    cfg = copy.deepcopy(cfg) if copy_cfg else cfg
    for item in overrides or []:
        parts, value, _ = parse_override(item)
        node = cfg
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[:i]) or "<top>"
            if isinstance(node, list):
                idx = _index(node, part, item, where)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
                continue
            if not isinstance(node, dict) and node is not None and not hasattr(node, "__dict__"):
                raise ConfigError(f"-o {item}: '{where}' is a {type(node).__name__} ({node!r}), not a section")
            if not _has(node, part) and check is not None:
                try:
                    check(parts[:i], node, part)
                except ConfigError as exc:
                    raise ConfigError(f"-o {item}: {exc}") from None
            if last:
                if isinstance(node, dict):
                    node[part] = value
                else:
                    setattr(node, part, value)
            elif isinstance(node, dict):
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
            else:
                if getattr(node, part, None) is None:
                    setattr(node, part, {})
                node = getattr(node, part)
    return cfg
