"""ImageService over Docker's local image store.

Mirrors dockershim's docker_image.go. kubeling has no registry: images are
built or imported locally, so PullImage returns the local image when present
and only then tries ``docker pull``, failing with a message that says both.
"""
from __future__ import annotations

import asyncio
import os
import time

import docker
import docker.errors
import grpc

from kubelet.dockershim import helpers as h
from proto.cri import api_pb2, api_pb2_grpc

PULL_TIMEOUT = 120.0


def split_reference(ref: str) -> tuple[str, str | None]:
    """"repo[:tag]" or "repo@digest" -> (repo, tag or digest or None)."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, None


def to_cri_image(img: dict) -> api_pb2.Image:
    """Docker image (list entry or inspect) -> CRI Image."""
    out = api_pb2.Image(id=img.get("Id", ""), repo_tags=img.get("RepoTags") or [],
                        repo_digests=img.get("RepoDigests") or [], size=img.get("Size") or 0)
    user = ((img.get("Config") or {}).get("User") or "").split(":")[0]
    if user.isdigit():
        out.uid.value = int(user)
    elif user:
        out.username = user
    out.spec.image = img.get("Id", "")
    return out


class DockerImageService(api_pb2_grpc.ImageServiceServicer):
    """The runtime.v1 ImageService of one node (``client``: docker.DockerClient)."""

    def __init__(self, *, client: docker.DockerClient) -> None:
        self.api = client.api

    async def _inspect(self, image: str) -> dict | None:
        if not image:
            raise h.invalid("image.image is required")
        try:
            return await asyncio.to_thread(self.api.inspect_image, image)
        except docker.errors.NotFound:
            return None
        except docker.errors.APIError as e:
            if e.status_code == 400:  # malformed reference
                raise h.invalid(f"invalid image reference {image!r}: {e.explanation}") from None
            raise

    @h.grpc_errors
    async def ListImages(self, request, context):
        """CRI ListImages: local Docker images, optionally only the one matching ``filter.image`` (id or repo:tag)."""
        wanted = request.filter.image.image
        images = await asyncio.to_thread(self.api.images)
        out = []
        for img in images:
            if wanted and wanted != img.get("Id") and wanted not in (img.get("RepoTags") or []):
                continue
            out.append(to_cri_image(img))
        return api_pb2.ListImagesResponse(images=out)

    @h.grpc_errors
    async def ImageStatus(self, request, context):
        """CRI ImageStatus: the image if present locally, else an empty response (not an error, as upstream)."""
        img = await self._inspect(request.image.image)
        return api_pb2.ImageStatusResponse(image=to_cri_image(img) if img else None)

    @h.grpc_errors
    async def PullImage(self, request, context):
        """CRI PullImage: the image id (``image_ref``); uses the local image if present, else pulls;
        NOT_FOUND when it is absent and the pull fails or times out.
        """
        ref = request.image.image
        img = await self._inspect(ref)
        if img is None:
            repo, tag = split_reference(ref)
            try:
                await asyncio.wait_for(asyncio.to_thread(self.api.pull, repo, tag=tag), PULL_TIMEOUT)
            except asyncio.TimeoutError:
                raise h.CRIError(grpc.StatusCode.NOT_FOUND, f"image {ref} not present locally and no registry "
                                 f"reachable: pull timed out after {PULL_TIMEOUT:.0f}s") from None
            except docker.errors.APIError as e:
                raise h.CRIError(grpc.StatusCode.NOT_FOUND, f"image {ref} not present locally and no registry "
                                 f"reachable: {e.explanation or e}") from None
            img = await self._inspect(ref)
            if img is None:
                raise h.CRIError(grpc.StatusCode.NOT_FOUND, f"image {ref} not present after pull")
        return api_pb2.PullImageResponse(image_ref=img["Id"])

    @h.grpc_errors
    async def RemoveImage(self, request, context):
        """CRI RemoveImage: remove the image; an absent image succeeds (idempotent)."""
        img = await self._inspect(request.image.image)
        if img is None:
            return api_pb2.RemoveImageResponse()
        try:
            await asyncio.to_thread(self.api.remove_image, request.image.image)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code == 409:
                raise h.CRIError(grpc.StatusCode.FAILED_PRECONDITION, f"image in use: {e.explanation}") from None
            raise
        return api_pb2.RemoveImageResponse()

    @h.grpc_errors
    async def ImageFsInfo(self, request, context):
        """CRI ImageFsInfo: bytes used by images and inodes of Docker's root filesystem."""
        info = await asyncio.to_thread(self.api.info)
        root = info.get("DockerRootDir", "/var/lib/docker")
        images = await asyncio.to_thread(self.api.images)
        used = sum(i.get("Size") or 0 for i in images)
        st = await asyncio.to_thread(os.statvfs, root)
        fs = api_pb2.FilesystemUsage(timestamp=time.time_ns(),
                                     fs_id=api_pb2.FilesystemIdentifier(mountpoint=root))
        fs.used_bytes.value = used
        fs.inodes_used.value = max(0, st.f_files - st.f_ffree)
        return api_pb2.ImageFsInfoResponse(image_filesystems=[fs], container_filesystems=[fs])
