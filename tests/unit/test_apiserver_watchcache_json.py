"""The watch cache's shared JSON (Cacher.encode / event_line) and the LIST body joined from it must be
exactly what encoding each object afresh gives, across updates, deletes and re-lists."""
from __future__ import annotations

import json

from apiserver.handlers import json_response, list_response
from apiserver.storage import cacher as cachemod
from apiserver.storage import codec, etcd3


def pod(name: str, rv: int, image: str = "busybox:1.35", ns: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv), "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": image}]}}


def cacher_with(*objs: dict, capacity: int = 8) -> cachemod.Cacher:
    c = cachemod.Cacher(None, "/registry/pods/", capacity=capacity)
    c._reset({f"/registry/pods/{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}, 10)
    return c


def test_encode_matches_fresh_encoding_and_is_shared():
    a = pod("a", 5)
    c = cacher_with(a)
    first = c.encode(a)
    assert first == codec.dumps(a)
    assert c.encode(a) is first  # memoized while current
    other = pod("a", 5)  # equal but not the cached object: encoded, not memoized
    assert c.encode(other) == first and id(other) not in c._json


def test_update_and_delete_keep_each_version_right():
    a = pod("a", 5)
    c = cacher_with(a)
    old_json = c.encode(a)
    a2 = pod("a", 11, image="busybox:1.36")
    c._apply([etcd3.Event("PUT", "/registry/pods/default/a", a2, a, 11)], 11)
    assert c.encode(a2) == codec.dumps(a2) != old_json
    assert c.encode(a) == old_json  # a watcher still sending the previous version
    gone = pod("a", 12, image="busybox:1.36")
    c._apply([etcd3.Event("DELETE", "/registry/pods/default/a", gone, None, 12)], 12)
    assert c.encode(gone) == codec.dumps(gone)
    assert c.event_line("DELETED", gone) == codec.dumps({"type": "DELETED", "object": gone}) + b"\n"
    assert id(a2) not in c._json


def test_event_memo_is_bounded_and_reset_clears():
    c = cacher_with(capacity=2)
    for i in range(200):
        o = pod(f"p{i}", 20 + i)
        c._apply([etcd3.Event("PUT", f"/registry/pods/default/p{i}", o, None, 20 + i)], 20 + i)
        c._apply([etcd3.Event("DELETE", f"/registry/pods/default/p{i}", o, None, 21 + i)], 21 + i)
    assert len(c._event_json) <= c._event_json_cap
    c._reset({}, 500)
    assert not c._json and not c._event_json


def test_list_body_equals_plain_encoding():
    objs = [pod(f"p{i}", i + 1) for i in range(5)]
    c = cacher_with(*objs)

    class S:
        cacher = c
    lst = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "10"},
           "items": objs + [pod("not-cached", 3)]}
    assert json.loads(list_response(S, lst).body) == json.loads(json_response(lst).body)
    empty = {"items": []}
    assert json.loads(list_response(S, empty).body) == empty


def test_codec_keeps_json_semantics():
    big = b'{"n": 123456789012345678901234567890}'
    assert codec.loads(big) == json.loads(big)
    assert codec.dumps({1: "x"}) == b'{"1":"x"}'
    try:
        codec.loads(b"{bad")
    except json.JSONDecodeError as e:
        assert "Expecting property name" in str(e)
    else:
        raise AssertionError("malformed JSON accepted")


async def test_watcher_delivers_times_out_and_ends():
    c = cacher_with()
    w = c.watch("/registry/pods/", lambda o: True, resource_version=10)
    assert await w.next(0.01) is None  # nothing yet: timeout
    o = pod("a", 11)
    c._apply([etcd3.Event("PUT", "/registry/pods/default/a", o, None, 11)], 11)
    assert await w.next(1) == ("ADDED", o) and w.revision == 11
    w.stop()
    for _ in range(2):  # ended, and stays ended
        try:
            await w.next(1)
        except StopAsyncIteration:
            pass
        else:
            raise AssertionError("watch did not end")


async def test_slow_watcher_is_terminated_after_its_queue_fills():
    c = cacher_with()
    w = cachemod.CacheWatcher(c, lambda o: True, "/registry/pods/", [], start_revision=10, queue_size=3)
    c.watchers.add(w)
    for i in range(5):
        o = pod(f"p{i}", 11 + i)
        c._apply([etcd3.Event("PUT", f"/registry/pods/default/p{i}", o, None, 11 + i)], 11 + i)
    got = [ev async for ev in w]
    assert [o["metadata"]["name"] for _, o in got] == ["p0", "p1", "p2"] and w not in c.watchers
