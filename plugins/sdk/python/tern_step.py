"""tern_step: the helper library for Tern step plugins written in Python (built with
componentize-py, see plugins/README.md). Copy it beside your step; nothing is downloaded at
run time. It turns the `tern:step` world into plain Python:

    from tern_step import step, fetch, StepError

    def run(config, variables, invocation):
        return {config["save_as"]: config["text"].upper()}

    WitWorld = step(name="acme.shout", version="0.1.0", description="Upper-cases a text",
                    config={"text": {"type": "string"}, "save_as": {"type": "string"}},
                    required=["text", "save_as"], run=run)

- `run(config, variables, invocation)` gets the step's fields and the run's variables as parsed
  JSON (dicts), and returns the variables to set (a dict), or `Result(variables, outcome)`.
- Errors are values: `raise StepError("retryable" | "fatal" | "invalid-config", message)`.
  Any other exception (a KeyError, a failed json.loads) becomes a `fatal` step error with its
  message and traceback, instead of a trap with no words.
- `fetch(url, method=, headers=, json=, body=, integration=, timeout_ms=)` calls through the
  host (the integration's token is injected there, never seen here) and returns a `Response`
  with `.status`, `.headers`, `.text()` and `.json()`; a refused or failed call raises a
  StepError (`retryable` for a timeout or a network failure, `fatal` otherwise).
"""

import json as _json
import traceback as _traceback
from dataclasses import dataclass as _dataclass
from typing import Any, Callable, Dict, Optional

import wit_world as _world
from componentize_py_types import Err as _Err
from wit_world.imports import host as _host

_KINDS = {
    "invalid-config": _host.StepError_InvalidConfig,
    "retryable": _host.StepError_Retryable,
    "fatal": _host.StepError_Fatal,
}


class StepError(Exception):
    """A step error with its kind: "invalid-config", "retryable" or "fatal"."""

    def __init__(self, kind: str, message: str):
        if kind not in _KINDS:
            raise ValueError(f"StepError kind must be one of {sorted(_KINDS)}, not {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message


@_dataclass
class Result:
    """Variables to set and an outcome label (the step's `outcomes` decide where it goes)."""

    variables: Dict[str, Any]
    outcome: Optional[str] = None


class Response:
    """An HTTP answer: `status`, `headers` (list of (name, value)), `text()`, `json()`."""

    def __init__(self, answer: _host.HttpResponse):
        self.status = answer.status
        self.headers = answer.headers
        self.body = answer.body

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)


def fetch(url: str, method: str = "GET", headers: Optional[Dict[str, str]] = None, json: Any = None,
          body: Optional[bytes] = None, integration: Optional[str] = None,
          timeout_ms: Optional[int] = None) -> Response:
    """Calls through the host; see the top of this file."""
    pairs = [(k, str(v)) for k, v in (headers or {}).items()]
    data = None
    if json is not None:
        data = _json.dumps(json).encode("utf-8")
        if not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(("content-type", "application/json"))
    elif body is not None:
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    request = _host.HttpRequest(method=method, url=url, headers=pairs, body=data,
                                integration=integration, token=None, timeout_ms=timeout_ms)
    try:
        return Response(_host.http_fetch(request))
    except _Err as e:
        err = e.value
        tag = type(err).__name__.removeprefix("HttpError_")
        kind = "retryable" if tag in ("Timeout", "Failed") else "fatal"
        raise StepError(kind, f"{method} {url} failed: {tag}: {err.value}") from None


_LEVELS = {"trace": _host.LogLevel.TRACE, "debug": _host.LogLevel.DEBUG, "info": _host.LogLevel.INFO,
           "warn": _host.LogLevel.WARN, "error": _host.LogLevel.ERROR}


def log(level: str, message: str) -> None:
    """Writes to Tern's log: level is "trace", "debug", "info", "warn" or "error"."""
    _host.log(_LEVELS.get(level, _host.LogLevel.INFO), str(message))


def _where(e: BaseException) -> str:
    """Where an exception was raised, innermost last. Built from the frames alone: the
    traceback module's own formatting reads the source files, and a plugin has no files."""
    frames = [f"  at {f.f_code.co_filename}:{line} in {f.f_code.co_name}" for f, line in _traceback.walk_tb(e.__traceback__)]
    if len(frames) > 20:  # deep recursion: the outermost frames and the innermost
        frames = frames[:5] + [f"  … {len(frames) - 20} more frames …"] + frames[-15:]
    return "\n".join(frames)


def step(name: str, version: str, description: str, run: Callable[..., Any],
         config: Optional[Dict[str, Any]] = None, required=(), output: Optional[Dict[str, Any]] = None):
    """The class componentize-py exports (assign it to `WitWorld`); see the top of this file."""
    schema = _json.dumps({"type": "object", "properties": config or {}, "required": list(required)})
    out_schema = _json.dumps({"type": "object", "properties": output}) if output else None

    class WitWorld(_world.WitWorld):
        def describe(self) -> _host.StepInfo:
            return _host.StepInfo(name=name, version=version, description=description,
                                  config_schema=schema, output_schema=out_schema)

        def run(self, invocation: _host.Invocation, config_json: str, variables_json: str) -> _host.Output:
            try:
                result = run(_json.loads(config_json), _json.loads(variables_json), invocation)
                if isinstance(result, Result):
                    variables, outcome = result.variables, result.outcome
                else:
                    variables, outcome = ({} if result is None else result), None
                if not isinstance(variables, dict):
                    raise TypeError(f"run returned {type(variables).__name__}; return a dict of variables or a Result")
                if outcome is not None and not isinstance(outcome, str):
                    raise TypeError(f"the outcome is {type(outcome).__name__}; an outcome is a str label or None")
                return _host.Output(variables_json=_json.dumps(variables, allow_nan=False), outcome=outcome)
            except StepError as e:
                raise _Err(_KINDS[e.kind](e.message))
            except _Err:
                raise
            except BaseException as e:  # SystemExit too: every exception reaches the step error with its words
                raise _Err(_host.StepError_Fatal(f"the step raised {type(e).__name__}: {e}\n{_where(e)}"))

    return WitWorld
