"""Structured logs: one logfmt line per event, the same in every kubeling component.

Why it exists: issue 9 asks for logs a person can grep and a program can
parse, with the level, the component and the object an event is about. It
plays the part of upstream's klog structured logging (``klog.InfoS("msg",
"pod", klog.KObj(pod))``) on top of Python's ``logging``, so the existing
``log.info("... %s", x)`` calls keep working unchanged.

The format (logfmt; keys in this order, then any object keys)::

    ts=2026-11-22T08:30:00.123Z level=info component=kubelet logger=kubelet.pod_workers msg="pod synced" pod=default/web-1

- ``ts``: UTC, ISO 8601 with milliseconds; ``level``: debug, info, warn,
  error, fatal; ``component``: the process (etcdlite, apiserver, scheduler,
  controller-manager, kubelet, kube-proxy, dns ...); ``logger``: the Python
  logger's name (the module); ``msg``: the %-formatted message.
- Object keys come from ``extra=``: ``log.info("synced", extra={"key": key})``
  or ``extra=klog.kv(pod=pod)`` where a Kubernetes object becomes its
  ``namespace/name`` (klog.KObj). Keys must not collide with LogRecord
  attributes (``name``, ``msg``, ``message``, ``args`` ...), which ``logging``
  refuses in a raw ``extra`` dict: use ``key``, ``pod``, ``node``, ``object``,
  ``controller`` ... (``kv`` renames a colliding key to ``name_``).
- A logger that always talks about one object can carry it:
  ``klog.with_values(log, controller="deployment").info(...)`` (klog's WithValues).
- Values are bare when they hold no space, ``=``, ``"`` or control character,
  else double-quoted with ``\\"``, ``\\\\``, ``\\n`` escapes; a traceback
  is the ``err`` field, escaped, so an event stays one line.

``parse(line)`` reads a line back into a dict (for ``kubeling cluster logs``
and tests). Cost: one dict walk and a few string joins per record; the
timestamp text is cached per second.
"""
from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, Mapping

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warn", logging.ERROR: "error",
           logging.CRITICAL: "fatal"}
_NEEDS_QUOTES = re.compile(r'[\s="\\\x00-\x1f\x7f]')


def quote(value: Any) -> str:
    """A logfmt value: bare if it needs no quotes, else double-quoted and escaped; ``""`` for empty."""
    s = value if isinstance(value, str) else str(value)
    if s and not _NEEDS_QUOTES.search(s):
        return s
    s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{s}"'


def kobj(obj: Any) -> str:
    """``namespace/name`` (or ``name``) of a Kubernetes object dict, as klog.KObj; other values as str."""
    if isinstance(obj, Mapping):
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name", "")
        return f"{ns}/{name}" if ns else name
    return str(obj)


def kv(**fields: Any) -> dict[str, str]:
    """``extra=`` fields: objects become ``namespace/name`` (kobj), other values their str. A key that
    is a LogRecord attribute (``name``, ``message``, ``args`` ...), which ``logging`` refuses in
    ``extra``, gets a trailing ``_`` (``name_=...``) instead of failing the caller."""
    return {(f"{k}_" if k in _STANDARD else k): kobj(v) for k, v in fields.items()}


class _WithValues(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **extra} if extra else self.extra
        return msg, kwargs


def with_values(logger: logging.Logger, **fields: Any) -> logging.LoggerAdapter:
    """A logger adding ``fields`` (as ``kv``) to every line, as klog's ``logger.WithValues``."""
    return _WithValues(logger, kv(**fields))


class LogfmtFormatter(logging.Formatter):
    """Formats records as the module docstring's logfmt line for ``component``."""

    def __init__(self, component: str):
        super().__init__()
        self.component = quote(component)
        self._sec = -1
        self._sec_text = ""

    def _ts(self, created: float) -> str:
        sec = int(created)
        if sec != self._sec:
            self._sec, self._sec_text = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._sec_text}.{int((created - sec) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"ts={self._ts(record.created)}",
                 f"level={_LEVELS.get(record.levelno) or record.levelname.lower()}",
                 f"component={self.component}", f"logger={quote(record.name)}",
                 f"msg={quote(record.getMessage())}"]
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                parts.append(f"{k}={quote(v)}")
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"err={quote(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={quote(record.stack_info)}")
        return " ".join(parts)


_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def parse(line: str) -> dict[str, str]:
    """The fields of one logfmt line (``{"ts": ..., "level": ..., "msg": ..., "pod": ...}``); text that
    is not ``key=value`` is skipped, so a line in another format gives ``{}`` or a partial dict."""
    out = {}
    for m in _PAIR.finditer(line):
        k, v = m.group(1), m.group(2)
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r"\\(.)", lambda e: _UNESCAPE.get(e.group(1), "\\" + e.group(1)), v[1:-1])
        out[k] = v
    return out


NOISY_LOGGERS = ("httpx", "httpcore", "uvicorn.access", "docker", "urllib3", "pyroute2")


def setup(component: str, *, level: int | str = logging.INFO) -> None:
    """Send the root logger's records to stderr as logfmt lines for ``component`` at ``level`` (a
    logging level or its name); quiets the chatty HTTP/Docker/netlink libraries to warnings. For
    processes that must start light (no web framework import); daemons call kubeling.daemon.setup_logging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter(component))
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level, handlers=[handler])
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
