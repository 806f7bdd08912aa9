"""kubeling.klog: the logfmt line every component writes (one line per event, object keys)."""
from __future__ import annotations

import io
import logging
import re

import pytest

from kubeling import klog

LINE = re.compile(r"^ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=\w+ component=\S+ logger=\S+ msg=")


@pytest.fixture
def capture():
    """A logger writing through LogfmtFormatter("kubelet") into a StringIO."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(klog.LogfmtFormatter("kubelet"))
    logger = logging.getLogger("kubelet.test_klog")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    yield logger, out
    logger.handlers, logger.propagate = [], True


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_line_has_time_level_component_logger_and_message(capture):
    log, out = capture
    log.info("pod %s synced", "web-1")
    [line] = lines(out)
    assert LINE.match(line), line
    f = klog.parse(line)
    assert (f["level"], f["component"], f["logger"], f["msg"]) == ("info", "kubelet", "kubelet.test_klog",
                                                                    "pod web-1 synced")


def test_levels_are_lowercase_upstream_names(capture):
    log, out = capture
    log.debug("d")
    log.warning("w")
    log.error("e")
    log.critical("c")
    assert [klog.parse(l)["level"] for l in lines(out)] == ["debug", "warn", "error", "fatal"]


def test_object_keys_from_extra_and_kobj(capture):
    log, out = capture
    pod = {"metadata": {"namespace": "default", "name": "web-1"}}
    node = {"metadata": {"name": "node1"}}
    log.info("started", extra=klog.kv(pod=pod, node=node))
    log.info("synced", extra={"key": "default/web"})
    a, b = lines(out)
    assert a.endswith('msg=started pod=default/web-1 node=node1')
    assert klog.parse(b)["key"] == "default/web"


def test_with_values_carries_fields_and_merges_extra(capture):
    log, out = capture
    clog = klog.with_values(log, controller="deployment")
    clog.info("sync", extra={"key": "ns/d"})
    clog.warning("again")
    a, b = (klog.parse(l) for l in lines(out))
    assert (a["controller"], a["key"]) == ("deployment", "ns/d")
    assert b["controller"] == "deployment" and "key" not in b


def test_quoting_round_trips_and_stays_one_line(capture):
    log, out = capture
    nasty = 'say "hi" = \\ back\nnext line\ttab'
    log.info(nasty, extra={"object": "a b"})
    [line] = lines(out)
    f = klog.parse(line)
    assert f["msg"] == nasty and f["object"] == "a b"
    log.info("")
    assert klog.parse(lines(out)[1])["msg"] == ""


def test_traceback_is_one_escaped_field(capture):
    log, out = capture
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sync failed", extra={"pod": "default/web-1"})
    [line] = lines(out)
    f = klog.parse(line)
    assert f["level"] == "error" and f["pod"] == "default/web-1"
    assert "Traceback" in f["err"] and "ValueError: boom" in f["err"]


def test_bare_values_need_no_quotes():
    assert klog.quote("default/web-1") == "default/web-1"
    assert klog.quote("") == '""'
    assert klog.quote("a=b") == '"a=b"'
    assert klog.quote(3) == "3"
    assert klog.kobj({"metadata": {"name": "n"}}) == "n"


def test_parse_skips_text_that_is_not_logfmt():
    assert klog.parse("2026-11-22 08:00:00,000 INFO old format") == {}
    assert klog.parse('a=1 b="x y" junk c=') == {"a": "1", "b": "x y", "c": ""}


def test_kv_renames_keys_logging_refuses(capture):
    log, out = capture
    log.info("x", extra=klog.kv(name="web", message="m", pod="default/p"))
    f = klog.parse(lines(out)[0])
    assert (f["name_"], f["message_"], f["pod"]) == ("web", "m", "default/p")
