"""TF_CONFIG helpers: each task's cluster, local clusters on free ports, which task is the chief."""

import json
import socket

import pytest

from age_estimation.training.cluster import free_port, is_chief, local_cluster, tf_config


def test_tf_config_describes_each_task_of_the_cluster():
    config = tf_config(["a:1", "b:2"], 1)
    assert config == {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert tf_config(["a:1"], 0, "chief", chief="c:3")["cluster"]["chief"] == ["c:3"]
    with pytest.raises(ValueError, match="not in the cluster"):
        tf_config(["a:1"], 2)
    configs = [json.loads(text) for text in local_cluster(2)]
    assert [c["task"]["index"] for c in configs] == [0, 1]
    workers = configs[0]["cluster"]["worker"]
    assert workers == configs[1]["cluster"]["worker"] and len(set(workers)) == 2
    assert all(address.startswith("127.0.0.1:") for address in workers)


def test_the_chief_is_the_chief_task_or_worker_zero():
    assert is_chief(None, None)
    assert is_chief("worker", 0, {"worker": ["a", "b"]})
    assert not is_chief("worker", 1, {"worker": ["a", "b"]})
    assert not is_chief("worker", 0, {"chief": ["c"], "worker": ["a"]})
    assert is_chief("chief", 0, {"chief": ["c"], "worker": ["a"]})


def test_a_free_port_can_be_bound_and_a_cluster_needs_a_worker():
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    with pytest.raises(ValueError, match="at least one worker"):
        local_cluster(0)
