"""Build the local sandbox image without pulling anything: a tiny root filesystem imported as an image.

The image holds only folders, symlinks into /usr, a passwd/group naming `nobody`, and the loader cache;
the host's /usr (python3, gcc, libc) is bind-mounted read-only at run time. The tag carries a hash of the
content, so building is idempotent and instant when the image exists. Machines that can pull a base image
may use infra/sandbox.Dockerfile instead (set DockerConfig.mount_host_usr=False).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time

IMAGE_REPOSITORY = "verifarm-sandbox"
PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/work/run:/usr/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
FOLDERS = {
    "etc": 0o755,
    "tmp": 0o1777,
    "work": 0o755,
    "run": 0o755,
    "run/verifarm": 0o700,
    "opt": 0o755,
    "opt/verifarm": 0o755,
    "usr": 0o755,
    "proc": 0o555,
    "dev": 0o755,
    "sys": 0o555,
    "root": 0o700,
    "var": 0o755,
    "var/tmp": 0o1777,
}
SYMLINKS = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}


def _root_files() -> dict[str, bytes]:
    files = {
        "etc/passwd": PASSWD.encode(),
        "etc/group": GROUP.encode(),
        "etc/hostname": b"sandbox\n",
        "etc/hosts": b"127.0.0.1 localhost sandbox\n",
    }
    if os.path.exists("/etc/ld.so.cache"):
        with open("/etc/ld.so.cache", "rb") as handle:
            files["etc/ld.so.cache"] = handle.read()
    return files


def root_tarball() -> tuple[bytes, str]:
    """The image's root filesystem as a tar, and a short hash of its content (the image tag)."""
    files = _root_files()
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode in sorted(FOLDERS.items()):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)
            digest.update(f"d {name} {mode}\n".encode())
        for name, target in sorted(SYMLINKS.items()):
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)
            digest.update(f"l {name} {target}\n".encode())
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
            digest.update(f"f {name} ".encode() + hashlib.sha256(data).digest())
    return buffer.getvalue(), digest.hexdigest()[:12]


def image_tag() -> str:
    return f"{IMAGE_REPOSITORY}:{root_tarball()[1]}"


def ensure_image(client) -> tuple[str, bool]:
    """The local sandbox image's tag, importing it first if missing; (tag, built_now)."""
    import docker.errors  # deferred: the docker client library is heavy, and only the docker backend needs it

    tarball, digest = root_tarball()
    tag = f"{IMAGE_REPOSITORY}:{digest}"
    try:
        client.images.get(tag)
        return tag, False
    except docker.errors.ImageNotFound:
        pass
    client.api.import_image_from_data(tarball, repository=IMAGE_REPOSITORY, tag=digest)
    for _ in range(50):  # the import is asynchronous on some engines
        try:
            client.images.get(tag)
            return tag, True
        except docker.errors.ImageNotFound:
            time.sleep(0.1)
    raise RuntimeError(f"docker import of {tag} did not produce an image")
