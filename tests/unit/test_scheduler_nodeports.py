"""NodePorts filter: hostPort conflicts as upstream's HostPortInfo.CheckConflict."""
import pytest

from scheduler.framework import Code
from scheduler.framework.interface import CycleState, run_pre_filters
from scheduler.framework.plugins import NodePorts
from test_scheduler_plugins import info, node, pod

REASON = "node(s) didn't have free ports for the requested pod ports"


def with_ports(name, *ports):
    p = pod(name)
    p["spec"]["containers"][0]["ports"] = [{"containerPort": 8080, **kw} for kw in ports]
    return p


@pytest.mark.parametrize("existing, wanted, ok", [
    pytest.param([], [{"hostPort": 80}], True, id="free-node"),
    pytest.param([{"hostPort": 80}], [{"hostPort": 80}], False, id="same-port"),
    pytest.param([{"hostPort": 80}], [{"hostPort": 81}], True, id="other-port"),
    pytest.param([{"hostPort": 80}], [{"hostPort": 80, "protocol": "UDP"}], True, id="other-protocol"),
    pytest.param([{"hostPort": 80, "hostIP": "10.0.0.1"}], [{"hostPort": 80, "hostIP": "10.0.0.2"}], True,
                 id="different-ips"),
    pytest.param([{"hostPort": 80, "hostIP": "10.0.0.1"}], [{"hostPort": 80}], False,
                 id="wildcard-wanted-conflicts-with-any-ip"),
    pytest.param([{"hostPort": 80}], [{"hostPort": 80, "hostIP": "10.0.0.2"}], False,
                 id="specific-wanted-conflicts-with-wildcard"),
    pytest.param([{"hostPort": 80}], [], True, id="no-host-port-wanted"),
    pytest.param([{"containerPort": 80}], [{"hostPort": 8080}], True, id="container-port-only-is-not-held"),
])
def test_node_ports(existing, wanted, ok):
    n = info(node(), with_ports("old", *existing))
    p = with_ports("new", *wanted)
    state = CycleState()
    plugin = NodePorts()
    assert run_pre_filters(p, [n], [plugin], state).ok
    st = plugin.filter(p, n, state)
    assert st.ok is ok
    if not ok:
        assert st.code is Code.UNSCHEDULABLE and st.reasons == (REASON,)
    # Without a PreFilter state the filter computes the ports itself.
    assert plugin.filter(p, n).ok is ok


def test_removing_the_holder_frees_the_port():
    holder = with_ports("old", {"hostPort": 80})
    n = info(node(), holder)
    assert not NodePorts().filter(with_ports("new", {"hostPort": 80}), n).ok
    n.remove_pod(holder)
    assert n.used_ports == {}
    assert NodePorts().filter(with_ports("new", {"hostPort": 80}), n).ok
