"""``TF_CONFIG`` for multi-worker training: the cluster of each task, local clusters, which task is the chief."""

from __future__ import annotations

import json
import socket
from contextlib import closing
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (for local clusters in tests and demos)."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tf_config(workers: list[str], index: int, task_type: str = "worker", chief: str | None = None) -> dict[str, Any]:
    """The ``TF_CONFIG`` mapping for task ``(task_type, index)`` of a cluster of ``workers`` (+ optional chief)."""
    cluster: dict[str, list[str]] = {"worker": list(workers)}
    if chief:
        cluster["chief"] = [chief]
    members = cluster.get(task_type)
    if members is None or not 0 <= index < len(members):
        raise ValueError(f"task {task_type}:{index} is not in the cluster {cluster}")
    return {"cluster": cluster, "task": {"type": task_type, "index": index}}


def local_cluster(num_workers: int, host: str = "127.0.0.1") -> list[str]:
    """One ``TF_CONFIG`` JSON string per worker of a cluster on this machine (free ports picked now)."""
    if num_workers < 1:
        raise ValueError(f"a cluster needs at least one worker, got {num_workers}")
    workers = [f"{host}:{free_port(host)}" for _ in range(num_workers)]
    return [json.dumps(tf_config(workers, i)) for i in range(num_workers)]


def is_chief(task_type: str | None, task_id: int | None, cluster: dict[str, Any] | None = None) -> bool:
    """The chief writes the run directory: task ``chief``, or worker 0 of a cluster without a chief."""
    if task_type in (None, "chief"):
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in (cluster or {})
