"""Which files a scenario may make flopcast read: any local file on the command line; on the web
service only catalog entries and files inside the folders given at `flopcast serve --data-dir`.

A scenario names files in a few keys: `model` and `fleet.models[].model` (a config.json),
`calibration` (a profile YAML) and `inference.workload.trace` (a CSV). Each place that resolves one
asks `permitted(value, field=...)` before it touches the file system, and parses what it read inside
`reading(...)`. Both consult the policy of the current context (a context variable, so that the
service's request threads each carry theirs; the default is the CLI's `LOCAL`):

- LOCAL: the value is returned unchanged and errors name what the file holds (the user's own file);
- a service policy: the value must be a relative name with no `..` part that resolves (symbolic links
  followed) to a regular file inside one of the data folders; the answer is that resolved path. Any
  error raised while a file is read and parsed becomes one generic line: an error message would
  otherwise show what the file holds (a parse error of a password file echoes its first entries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

from flopcast.errors import InvalidScenario

MAX_NAME_SHOWN = 80      # characters of a refused name repeated in an error


@dataclass(frozen=True, slots=True)
class FileAccess:
    """A file-reading policy: `local` reads any path; otherwise only files inside `data_dirs`."""

    local: bool = True
    data_dirs: tuple[Path, ...] = ()   # resolved, existing folders (service policies only)

    @classmethod
    def service(cls, data_dirs: Iterable[str | Path] = ()) -> FileAccess:
        """The service's policy: files only inside these folders (none: no files at all)."""
        folders = []
        for d in data_dirs:
            p = Path(d).expanduser()
            if not p.is_dir():
                raise InvalidScenario(f"--data-dir: {str(d)!r} is not an existing folder")
            folders.append(p.resolve())
        return cls(local=False, data_dirs=tuple(folders))


LOCAL = FileAccess()
_POLICY: ContextVar[FileAccess] = ContextVar("flopcast_file_access", default=LOCAL)


def current() -> FileAccess:
    """The policy in force in this context."""
    return _POLICY.get()


@contextmanager
def access(policy: FileAccess) -> Iterator[FileAccess]:
    """Run a block under `policy` (the service wraps each request in it)."""
    token = _POLICY.set(policy)
    try:
        yield policy
    finally:
        _POLICY.reset(token)


def _shown(value: str) -> str:
    text = value if len(value) <= MAX_NAME_SHOWN else value[:MAX_NAME_SHOWN] + "..."
    return repr(text)


def permitted(value: str, *, field: str) -> str:
    """The path to open for a file named in a scenario key: `value` itself under LOCAL; under a service
    policy the resolved path inside a data folder, or InvalidScenario naming `field`."""
    policy = current()
    if policy.local:
        return value
    shown = _shown(str(value))
    if not policy.data_dirs:
        raise InvalidScenario(f"{field}: {shown} is not a catalog entry, and the service reads no files named in a "
                              "request; give a catalog id or an inline mapping (the CLI reads local files)")
    name = Path(str(value))
    if "\x00" in str(value) or not str(value).strip():
        raise InvalidScenario(f"{field}: {shown} is not a file name")
    if name.is_absolute() or str(value).startswith("~"):
        raise InvalidScenario(f"{field}: {shown}: the service reads no absolute paths; name a file relative to its "
                              "data folder")
    if ".." in name.parts:
        raise InvalidScenario(f"{field}: {shown}: '..' is not allowed; name a file inside the service's data folder")
    for folder in policy.data_dirs:
        try:
            path = (folder / name).resolve()
        except (OSError, RuntimeError):      # a symbolic-link loop, a name too long
            raise InvalidScenario(f"{field}: {shown} cannot be resolved inside the service's data folder") from None
        if not path.is_relative_to(folder):
            raise InvalidScenario(f"{field}: {shown} leads outside the service's data folder (a symbolic link)")
        if path.is_file():
            return str(path)
    raise InvalidScenario(f"{field}: {shown} is neither a catalog entry nor a file in the service's data folder")


@contextmanager
def reading(field: str, name: str | Path, what: str) -> Iterator[None]:
    """Around the reading and parsing of one named file (`what`: e.g. 'calibration profile'). Under
    LOCAL errors pass unchanged; under a service policy any error becomes one generic line that shows
    nothing the file holds."""
    if current().local:
        yield
        return
    try:
        yield
    except Exception:
        raise InvalidScenario(f"{field}: {_shown(Path(name).name)} is not a valid {what}; the service does not "
                              "show what a file holds (check it with the flopcast CLI)") from None
