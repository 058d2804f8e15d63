"""The Dockerfile and .dockerignore checked statically: pinned base images, a non-root gateway on 8080 with a
health check, and a build context holding everything the Dockerfile copies."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

from stack_files import (
    DOCKERIGNORE,
    ROOT,
    container_ports,
    dockerfile_base_images,
    dockerfile_stages,
    exec_form,
    gateway_service,
    image_is_pinned,
    services,
)


def test_dockerfile_base_images_are_pinned_python_311_slim():
    images = dockerfile_base_images()
    assert images, "Dockerfile has no FROM"
    for image in images:
        assert image_is_pinned(image), f"Dockerfile base image {image!r} is not pinned"
        assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11\.\d+-slim(-\w+)?(@sha256:\w+)?", image), image


# ---- compose wiring -----------------------------------------------------------------------------


def test_dockerfile_runs_the_gateway_as_non_root_on_8080_with_a_healthz_check():
    final = dockerfile_stages()[-1]
    instructions = dict(final)  # last wins, like Docker
    user = instructions.get("USER", "root").split(":")[0]
    assert user not in ("root", "0"), "the runtime stage must drop root"
    assert "8080" in instructions.get("EXPOSE", "").split()
    assert "/healthz" in instructions.get("HEALTHCHECK", "") and "8080" in instructions["HEALTHCHECK"]
    command = exec_form(instructions.get("ENTRYPOINT", "[]")) + exec_form(instructions.get("CMD", "[]"))
    assert command[:2] == ["voice-trace-gateway", "serve"], command
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8080"
    assert any(i == "RUN" and "pip install ." in a for stage in dockerfile_stages() for i, a in stage)
    compose_gateway = services()[gateway_service()]
    assert 8080 in container_ports(compose_gateway), "compose must publish the port the image serves on"


def _dockerignore_excludes(path: str) -> bool:
    excluded = False
    for raw in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        candidates = [path, *(str(Path(path).parents[i]) for i in range(len(Path(path).parts) - 1))]
        patterns = [pattern, pattern.removeprefix("**/")]
        if any(fnmatch.fnmatch(c, p) for c in candidates for p in patterns):
            excluded = not negate
    return excluded


def test_dockerignore_check_sees_excluded_paths():
    assert _dockerignore_excludes(".git")
    assert _dockerignore_excludes("gateway/__pycache__/x.pyc")
    assert not _dockerignore_excludes("gateway/app.py")


def test_docker_build_context_has_everything_the_dockerfile_copies():
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction not in ("COPY", "ADD") or "--from=" in args:
                continue
            words = exec_form(args) if args.strip().startswith("[") else args.split()
            sources = [w for w in words if not w.startswith("--")][:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"Dockerfile copies {source}, which is not in the repo"
                assert not _dockerignore_excludes(source.rstrip("/")), f".dockerignore excludes {source}"
