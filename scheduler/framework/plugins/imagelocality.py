"""ImageLocality score: prefer nodes that already hold the pod's images.

Mirrors pkg/scheduler/framework/plugins/imagelocality: each container (and
init container) image present in the node's status.images adds its size
scaled by the fraction of all nodes holding it (so a popular image does not
pull every pod onto the same nodes); the sum is clamped to
[23 MiB, 1000 MiB x containers] and scaled to 0..100. Image names compare
after upstream's normalization (``busybox`` -> ``busybox:latest``).
"""
from __future__ import annotations

import collections
from typing import Sequence

from scheduler.framework.interface import ALL_NODES, MAX_NODE_SCORE, SKIP, CycleState
from scheduler.framework.types import NodeInfo

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def normalized_image_name(name: str) -> str:
    """Append ``:latest`` when the name has no tag (upstream's normalizedImageName)."""
    if name.rfind(":") <= name.rfind("/"):
        name += ":latest"
    return name


def node_images(info: NodeInfo) -> dict[str, int]:
    """Normalized image name -> size in bytes, from the node's status.images
    (parsed once per node object, kept on the NodeInfo)."""
    if info.images is None:
        out = {}
        for image in ((info.node or {}).get("status") or {}).get("images") or []:
            for name in image.get("names") or []:
                out[normalized_image_name(name)] = int(image.get("sizeBytes") or 0)
        info.images = out
    return info.images


def _pod_images(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    return [normalized_image_name(c.get("image") or "")
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def calculate_priority(sum_scores: int, num_containers: int) -> int:
    """Clamp ``sum_scores`` to [MIN_THRESHOLD, MAX_CONTAINER_THRESHOLD * containers], scale to 0..100."""
    max_threshold = MAX_CONTAINER_THRESHOLD * max(num_containers, 1)
    sum_scores = min(max(sum_scores, MIN_THRESHOLD), max_threshold)
    return MAX_NODE_SCORE * (sum_scores - MIN_THRESHOLD) // (max_threshold - MIN_THRESHOLD)


class ImageLocality:
    """Score on images already present on the node (weight 1 in the default profile)."""

    name = "ImageLocality"
    weight = 1

    def pre_score(self, pod: dict, nodes: Sequence[NodeInfo], state: CycleState) -> bool | None:
        """Count, over every node of the snapshot, how many hold each of the pod's images.
        Returns SKIP (False) when no node holds any: every score would be 0."""
        everyone = state.get(ALL_NODES) or nodes
        wanted = set(_pod_images(pod))
        spread: collections.Counter[str] = collections.Counter()
        num_nodes = getattr(everyone, "image_num_nodes", None)  # kept by the cache's snapshot
        if num_nodes is not None:
            spread.update({name: num_nodes[name] for name in wanted if num_nodes.get(name)})
        for info in everyone if num_nodes is None else ():
            images = node_images(info)
            if images:
                for name in wanted & images.keys():
                    spread[name] += 1
        state[self.name] = (spread, len(everyone))
        return None if spread else SKIP

    def score(self, pod: dict, node_info: NodeInfo, state: CycleState | None = None) -> int:
        """0..MAX_NODE_SCORE (mirrors ImageLocality.Score)."""
        images = _pod_images(pod)
        if state is None or self.name not in state:
            state = CycleState({ALL_NODES: [node_info]})
            self.pre_score(pod, [node_info], state)
        spread, total = state[self.name]
        have = node_images(node_info)
        total_score = sum(int(have[name] * spread[name] / total) for name in images if name in have)
        return calculate_priority(total_score, len(images))
