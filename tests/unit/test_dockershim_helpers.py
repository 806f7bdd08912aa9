"""Pure conversions of the dockershim: times, labels, names, image refs, log lines."""
from __future__ import annotations

import pytest

from kubelet.dockershim import helpers as h
from kubelet.dockershim.docker_image import split_reference
from kubelet.dockershim.logs import format_line, last_timestamps
from kubelet.dockershim.server import socket_path
from proto.cri import api_pb2


@pytest.mark.parametrize("value,expected", [
    pytest.param("0001-01-01T00:00:00Z", 0, id="zero"),
    pytest.param("", 0, id="empty"),
    pytest.param("1970-01-01T00:00:01.5Z", 1_500_000_000, id="fraction"),
    pytest.param("2024-01-02T03:04:05.123456789Z", 1704164645_123456789, id="nanos"),
    pytest.param("2024-01-02T05:04:05.000000001+02:00", 1704164645_000000001, id="offset"),
])
def test_parse_docker_time(value, expected):
    assert h.parse_docker_time(value) == expected


def test_labels_roundtrip_hides_internal_ones():
    docker_labels = h.make_labels({"app": "web"}, {"note": "x"}, {h.TYPE: h.TYPE_SANDBOX, h.NODE: "n1"})
    assert h.split_labels(docker_labels) == ({"app": "web"}, {"note": "x"})
    assert h.match_labels({"app": "web", "x": "y"}, {"app": "web"})
    assert not h.match_labels({"app": "web"}, {"app": "db"})


def test_states_and_names():
    assert h.container_state("running") == api_pb2.CONTAINER_RUNNING
    assert h.container_state("exited") == api_pb2.CONTAINER_EXITED
    assert h.container_state("weird") == api_pb2.CONTAINER_UNKNOWN
    assert h.docker_name("POD", "web", "default", "u/1", 0, "node-1") == "k8s_POD_web_default_u-1_0_node-1"


@pytest.mark.parametrize("ref,expected", [
    ("busybox:1.35", ("busybox", "1.35")),
    ("busybox", ("busybox", None)),
    ("localhost:5000/x/y:2", ("localhost:5000/x/y", "2")),
    ("localhost:5000/x", ("localhost:5000/x", None)),
    ("x@sha256:abc", ("x", "sha256:abc")),
])
def test_split_reference(ref, expected):
    assert split_reference(ref) == expected


def test_log_resume_point(tmp_path):
    """A restarted follower resumes after the last line of each stream already written."""
    path = tmp_path / "0.log"
    path.write_text(format_line("2024-01-02T03:04:05.000000001Z", "stdout", "a")
                    + format_line("2024-01-02T03:04:06.000000001Z", "stderr", "b")
                    + format_line("2024-01-02T03:04:07.000000001Z", "stdout", "c"))
    got = last_timestamps(str(path))
    assert got["stdout"] == h.parse_docker_time("2024-01-02T03:04:07.000000001Z")
    assert got["stderr"] == h.parse_docker_time("2024-01-02T03:04:06.000000001Z")
    assert last_timestamps(str(tmp_path / "none")) == {"stdout": 0, "stderr": 0}


def test_socket_path():
    assert socket_path("unix:///run/x/cri.sock") == "/run/x/cri.sock"
    with pytest.raises(ValueError):
        socket_path("tcp://127.0.0.1:1")


def test_seccomp_security_opts(tmp_path):
    """As dockershim's getSeccompSecurityOpts: the typed field first, the deprecated path otherwise."""
    sec = api_pb2.LinuxContainerSecurityContext()
    assert h.seccomp_security_opts(sec) == ["seccomp=unconfined"]
    sec.seccomp_profile_path = "runtime/default"
    assert h.seccomp_security_opts(sec) == []
    sec.seccomp.profile_type = api_pb2.SecurityProfile.Unconfined
    assert h.seccomp_security_opts(sec) == ["seccomp=unconfined"]
    profile = tmp_path / "p.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    sec.seccomp.CopyFrom(api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Localhost,
                                                 localhost_ref=str(profile)))
    assert h.seccomp_security_opts(sec) == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']
    sec.seccomp.localhost_ref = str(tmp_path / "missing.json")
    with pytest.raises(h.CRIError) as err:
        h.seccomp_security_opts(sec)
    assert "missing.json" in err.value.message
