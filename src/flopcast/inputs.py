"""Reading what users give flopcast, at the edge: files, YAML and JSON text, numbers from flags.

Every failure is an InvalidScenario with one line `<field>: <what is wrong>; <what is accepted>`,
never a traceback. What this module guarantees about what it returns:

- text files: a regular file (not a directory), at most MAX_FILE_BYTES, UTF-8 text without NUL bytes;
- YAML: safe tags only, no duplicate keys in any mapping, at most MAX_YAML_NODES nodes once every
  alias is expanded (a 600-byte "billion laughs" document is refused before it is built), nesting at
  most MAX_NESTING deep;
- numbers (YAML and JSON): at most MAX_NUMBER_CHARS characters, refused before they are converted (a
  5,000-digit integer cannot even be printed in an error message); YAML 1.1's surprises refused with
  the key: a leading zero (`010` would be octal 8) and sexagesimal `1:30` (would be 90);
- JSON: no duplicate keys, no NaN / Infinity literals, the same nesting bound;
- `check_finite`: no NaN or infinite float and no integer of more than MAX_INT_DIGITS digits anywhere in
  a parsed structure (named by its path).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flopcast.errors import InvalidScenario

MAX_FILE_BYTES = 16 << 20      # a scenario, config.json or claims file larger than 16 MiB is not one
MAX_YAML_NODES = 20_000        # nodes after alias expansion (a scenario with an inline config has < 1,000)
MAX_NESTING = 64               # mapping / list depth (scenarios nest 4 deep)
MAX_NUMBER_CHARS = 64          # characters of one number literal ("1.0e+18", "0.012345678901234567")
MAX_INT_DIGITS = 40            # an integer past 1e40 is no count, size or time flopcast can use


def read_text(path: str | Path, *, what: str, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a user-named file, or InvalidScenario naming `what` (e.g. 'scenario')."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InvalidScenario(f"{what}: {str(p)!r} is a directory; expected a file")
        if not p.exists():
            raise InvalidScenario(f"{what}: file not found: {p}")
        if not p.is_file():
            raise InvalidScenario(f"{what}: {str(p)!r} is not a regular file (a pipe or device); save it to a file")
        size = p.stat().st_size
        if size > max_bytes:
            raise InvalidScenario(f"{what}: {str(p)!r} is {size:,} bytes; at most {max_bytes:,} are read")
        raw = p.read_bytes()
    except OSError as e:
        raise InvalidScenario(f"{what}: cannot read {str(p)!r} ({e.strerror or type(e).__name__})") from None
    return decode_text(raw, what=f"{what}: {str(p)!r}")


def decode_text(raw: bytes, *, what: str) -> str:
    """UTF-8 text (a BOM is dropped) or InvalidScenario: binary data and other encodings are refused."""
    if b"\x00" in raw:
        raise InvalidScenario(f"{what} is a binary file; expected UTF-8 text (YAML, JSON or CSV)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidScenario(f"{what} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None


# ------------------------------------------------------------------------------------------ YAML
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


def _number_problem(text: str, tag: str) -> str | None:
    """What is wrong with a YAML number literal a user wrote (None: it reads as written). YAML 1.1
    reads `010` as octal 8 and `1:30` as sexagesimal 90; neither is what a scenario means."""
    if len(text) > MAX_NUMBER_CHARS:
        return (f"a number of {len(text):,} characters; at most {MAX_NUMBER_CHARS} "
                "(write large values with an exponent, e.g. 1.5e13)")
    if ":" in text:
        return (f"{text} is a YAML 1.1 base-60 number (read as {_sexagesimal(text):g}); quote it for text, "
                "or write the number with its unit (e.g. '90 min')")
    digits = text.lstrip("+-").replace("_", "")
    if tag == _INT_TAG and len(digits) > 1 and digits[0] == "0" and digits[1] not in "xXbB":
        return (f"{text} has a leading zero, which YAML 1.1 reads as octal ({text} would be "
                f"{int(digits, 8) if set(digits) <= set('01234567') else '?'}); write {digits.lstrip('0') or '0'}")
    return None


def _sexagesimal(text: str) -> float:
    """The value YAML 1.1 gives `1:30` (90) or `1:30.5` (90.5)."""
    sign = -1.0 if text.startswith("-") else 1.0
    total = 0.0
    for part in text.lstrip("+-").replace("_", "").split(":"):
        try:
            total = total * 60 + float(part or 0)
        except ValueError:
            return math.nan
    return sign * total


def _loader_class():
    import yaml

    def checked(tag: str, base):
        def construct(loader, node):
            problem = _number_problem(str(node.value), tag)
            if problem:
                raise InvalidScenario(f"line {node.start_mark.line + 1}: {problem}")
            return base(loader, node)
        return construct

    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        """SafeLoader (libyaml's parser when present) that refuses duplicate keys (a later key
        silently replacing an earlier one)."""

        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, int] = {}
                for key_node, value_node in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        hash(key)
                    except TypeError:
                        raise yaml.constructor.ConstructorError(
                            None, None, "a mapping key must be a plain value, not a list or mapping",
                            key_node.start_mark) from None
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
                    seen[key] = key_node.start_mark.line
                    _check_number_value(key, value_node)
            return super().construct_mapping(node, deep=deep)

    def _check_number_value(key: Any, value_node) -> None:
        if isinstance(value_node, yaml.ScalarNode) and value_node.tag in (_INT_TAG, _FLOAT_TAG):
            problem = _number_problem(str(value_node.value), value_node.tag)
            if problem:
                raise InvalidScenario(f"{key}: {problem} (line {value_node.start_mark.line + 1})")

    for tag in (_INT_TAG, _FLOAT_TAG):
        StrictLoader.add_constructor(tag, checked(tag, StrictLoader.yaml_constructors[tag]))
    return StrictLoader


_LOADER = None


def _expanded_size(root) -> int:
    """Number of nodes of the YAML graph with every alias expanded, computed without expanding
    (memoised per node; a node that contains itself is refused)."""
    import yaml

    def children(node) -> list:
        if isinstance(node, yaml.MappingNode):
            return [x for pair in node.value for x in pair]
        if isinstance(node, yaml.SequenceNode):
            return node.value
        return []

    size: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            kids = children(node)
            size[nid] = min(1 + sum(size[id(c)] for c in kids), MAX_YAML_NODES + 1)
            if size[nid] > MAX_YAML_NODES:
                raise InvalidScenario(f"more than {MAX_YAML_NODES:,} values once its aliases (*name) are expanded; "
                                      "write the document out or use fewer aliases")
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise InvalidScenario("an alias refers to a mapping or list that contains it; expected a finite document")
        if depth > MAX_NESTING:
            raise InvalidScenario(f"nested more than {MAX_NESTING} levels deep")
        on_path.add(nid)
        stack.append((node, depth, True))
        for c in children(node):
            if id(c) not in size:
                stack.append((c, depth + 1, False))
    return size[id(root)]


def load_yaml(text: str, *, what: str) -> Any:
    """Parse YAML (JSON is YAML) strictly: safe tags, no duplicate keys, bounded alias expansion."""
    import yaml

    global _LOADER
    if _LOADER is None:
        _LOADER = _loader_class()
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            _expanded_size(node)
        except InvalidScenario as e:
            raise InvalidScenario(f"{what}: {e}") from None
        try:
            return loader.construct_document(node)
        except InvalidScenario as e:
            raise InvalidScenario(f"{what}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = (getattr(e, "problem", None) or str(e).splitlines()[0]).strip()
        raise InvalidScenario(f"{what}: not valid YAML{where} ({problem}); expected a YAML or JSON mapping") from None
    except RecursionError:
        raise InvalidScenario(f"{what}: nested too deeply; at most {MAX_NESTING} levels") from None
    finally:
        loader.dispose()


# ------------------------------------------------------------------------------------------ JSON
def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidScenario(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise InvalidScenario(f"{name} is not a number JSON allows")


class NotJSON(InvalidScenario):
    """The text is not JSON at all (it may still be YAML)."""


def _json_number(kind: type):
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise InvalidScenario(f"a number of {len(text):,} characters; at most {MAX_NUMBER_CHARS} "
                                  "(write large values with an exponent, e.g. 1.5e13)")
        return kind(text)
    return parse


def load_json(text: str, *, what: str) -> Any:
    """Parse JSON strictly: no duplicate keys, no NaN / Infinity, bounded nesting and number length."""
    import json

    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                          parse_int=_json_number(int), parse_float=_json_number(float))
    except InvalidScenario as e:
        raise InvalidScenario(f"{what}: {e}; expected JSON with unique keys and finite numbers") from None
    except json.JSONDecodeError as e:
        raise NotJSON(f"{what}: not valid JSON ({e.msg} at line {e.lineno}); expected a JSON object") from None
    except RecursionError:
        raise InvalidScenario(f"{what}: nested too deeply; at most {MAX_NESTING} levels") from None


# ------------------------------------------------------------------------------------ numbers
def check_finite(data: Any, *, where: str = "", depth: int = 0) -> None:
    """Refuse NaN and infinite floats and integers of more than MAX_INT_DIGITS digits anywhere in `data`
    (mappings and lists walked; `where` names the path). A huge integer is measured by its bits, never
    printed (Python refuses to print one of more than 4,300 digits)."""
    if depth > MAX_NESTING:
        raise InvalidScenario(f"{where or 'input'}: nested more than {MAX_NESTING} levels deep")
    if isinstance(data, int) and not isinstance(data, bool):
        check_int_size(data, field=where or "value")
    elif isinstance(data, float):
        if not math.isfinite(data):
            raise InvalidScenario(f"{where or 'value'}: {data!r} is not a finite number; expected a finite number "
                                  "(or a quantity with its unit)")
    elif isinstance(data, Mapping):
        for k, v in data.items():
            check_finite(v, where=f"{where}.{k}" if where else str(k), depth=depth + 1)
    elif isinstance(data, (list, tuple)):
        for i, v in enumerate(data):
            check_finite(v, where=f"{where}[{i}]", depth=depth + 1)


def check_int_size(value: int, *, field: str) -> None:
    """Refuse an integer of more than MAX_INT_DIGITS decimal digits (counted from its bit length)."""
    if abs(value).bit_length() > MAX_INT_DIGITS * 3.33:
        digits = int(abs(value).bit_length() * 0.30103) + 1
        raise InvalidScenario(f"{field}: an integer of about {digits:,} digits; at most {MAX_INT_DIGITS} "
                              "(write large values with an exponent, e.g. 1.5e13)")


def finite_number(value: Any, *, field: str, minimum: float | None = None, maximum: float | None = None,
                  exclusive_minimum: bool = False, accepted: str = "a number") -> float:
    """A finite float within bounds (a numeric string such as '90' is read too)."""
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip())
        except ValueError:
            raise InvalidScenario(f"{field}: cannot read {value!r}; expected {accepted}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidScenario(f"{field}: expected {accepted}, got {value!r}")
    if isinstance(v, int):
        check_int_size(v, field=field)
    v = float(v)
    if not math.isfinite(v):
        raise InvalidScenario(f"{field}: {value!r} is not a finite number; expected {accepted}")
    if minimum is not None and (v < minimum or (exclusive_minimum and v == minimum)):
        raise InvalidScenario(f"{field}: {value!r} is {'at or ' if exclusive_minimum else ''}below {minimum:g}; "
                              f"expected {accepted}")
    if maximum is not None and v > maximum:
        raise InvalidScenario(f"{field}: {value!r} is above {maximum:g}; expected {accepted}")
    return v


def writable_file(path: str | Path, *, what: str) -> Path:
    """A path a command may write to: its folder exists and it is not a directory (checked before work)."""
    p = Path(path)
    if p.is_dir():
        raise InvalidScenario(f"{what}: {str(p)!r} is a directory; expected a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InvalidScenario(f"{what}: folder {str(parent)!r} does not exist; create it or write elsewhere")
    return p


def writable_dir(path: str | Path, *, what: str) -> Path:
    """A folder a command may write into: an existing folder, or a new one whose parent exists."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InvalidScenario(f"{what}: {str(p)!r} is a file; expected a folder (it is created when missing)")
    parent = p.parent if str(p.parent) else Path(".")
    if not p.exists() and not parent.is_dir():
        raise InvalidScenario(f"{what}: folder {str(parent)!r} does not exist; create it or write elsewhere")
    return p


# ------------------------------------------------------------------------------------ echoes
def jsonable(data: Any, *, depth: int = 0) -> Any:
    """`data` as JSON data, for echoing parsed inputs in a report: mappings and lists walked, an
    object with `to_dict()` by it, another dataclass by its fields; plain values as they are."""
    import dataclasses

    if depth > MAX_NESTING:
        raise InvalidScenario(f"input: nested more than {MAX_NESTING} levels deep")
    if data is None or isinstance(data, (str, bool, int, float)):
        return data
    if isinstance(data, Mapping):
        return {str(k): jsonable(v, depth=depth + 1) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [jsonable(v, depth=depth + 1) for v in data]
    to_dict = getattr(data, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict(), depth=depth + 1)
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return {f.name: jsonable(getattr(data, f.name), depth=depth + 1) for f in dataclasses.fields(data)}
    return str(data)
