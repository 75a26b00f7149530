"""Build vigie's container images: a Debian base, a wheelhouse built on the host, one target each.

    python deploy/images.py build serve            # vigie-serve:0.1.0
    python deploy/images.py build all              # serve, monitor, jobs, serve-cuda
    python deploy/images.py sizes                  # the size of each image built

Nothing is downloaded inside a build: the wheels come from the host's ``pip wheel`` (the
package registry as the host's pip reaches it), the base is a Debian root filesystem made by
``debootstrap --variant=minbase`` and loaded with ``docker import``, unless ``--base`` names
another (any image with ``python3`` 3.11 and ``useradd``). Both are cached under
``$VIGIE_IMAGE_CACHE`` (default ``~/.cache/vigie-images``), never in the checkout.

When no Docker engine answers, ``build`` starts ``dockerd`` (as root, host network only) with
its socket and data under the cache folder, and stops it, by its PID, when done.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
VERSION = "0.1.0"
BASE_TAG = "vigie-base:bookworm"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
#: Debian packages of the base beyond minbase: the interpreter and the CA bundle.
BASE_PACKAGES = ("python3", "ca-certificates")
#: Folders of the base root filesystem that no image needs.
BASE_TRIM = (
    "var/cache/apt",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)


@dataclass(frozen=True)
class Target:
    """One image: its Dockerfile target, the package extras it installs, its name."""

    name: str
    extras: str

    @property
    def tag(self) -> str:
        """The image's name and version."""
        return f"vigie-{self.name}:{VERSION}"


TARGETS = {
    t.name: t
    for t in (
        Target("serve", "serve,cpu"),
        Target("monitor", "monitor,cpu"),
        Target("jobs", "train,cpu"),
        Target("serve-cuda", "serve,gpu"),
    )
}


def cache_dir() -> Path:
    """Where the base tarball, the wheelhouses and a started engine's data live."""
    default = Path.home() / ".cache" / "vigie-images"
    path = Path(os.environ.get("VIGIE_IMAGE_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, failing with its output when it fails."""
    done = subprocess.run(argv, text=True, capture_output=True, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... failed ({done.returncode}):\n{done.stdout[-3000:]}"
            f"\n{done.stderr[-3000:]}"
        )
    return done  # type: ignore[no-any-return]


def engine_answers() -> bool:
    """Whether ``docker info`` reaches an engine (DOCKER_HOST or the default socket)."""
    done = subprocess.run(["docker", "info"], capture_output=True, check=False)
    return done.returncode == 0


def can_build() -> bool:
    """Whether images can be built here: an engine (or root and dockerd), and a base source."""
    engine = engine_answers() or (shutil.which("dockerd") is not None and os.geteuid() == 0)
    tarball = cache_dir() / f"{SUITE}-minbase-python3.tar"
    return engine and (tarball.exists() or shutil.which("debootstrap") is not None)


@contextlib.contextmanager
def engine() -> Iterator[None]:
    """A Docker engine for the duration: the one that answers, or one started here."""
    if engine_answers():
        yield
        return
    if shutil.which("dockerd") is None:
        raise RuntimeError("no Docker engine answers and dockerd is not installed")
    state = cache_dir() / "engine"
    run_dir = Path(tempfile.mkdtemp(prefix="vigie-dockerd-"))
    socket = run_dir / "docker.sock"
    log = (state.parent / "dockerd.log").open("wb")
    process = subprocess.Popen(
        [
            "dockerd",
            f"--host=unix://{socket}",
            f"--data-root={state}",
            f"--exec-root={run_dir / 'exec'}",
            f"--pidfile={run_dir / 'dockerd.pid'}",
            "--iptables=false",
            "--bridge=none",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = f"unix://{socket}"
    try:
        deadline = time.monotonic() + 60
        while not engine_answers():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start; see {log.name}")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(run_dir, ignore_errors=True)
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


def image_exists(tag: str) -> bool:
    """Whether the engine holds ``tag``."""
    done = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False)
    return done.returncode == 0


def ensure_base(tag: str = BASE_TAG) -> str:
    """The Debian base image: in the engine, else imported from the cached tarball, else made."""
    if image_exists(tag):
        return tag
    tarball = cache_dir() / f"{SUITE}-minbase-python3.tar"
    if not tarball.exists():
        _debootstrap(tarball)
    run(["docker", "import", "--change", 'CMD ["python3"]', str(tarball), tag])
    return tag


def _debootstrap(tarball: Path) -> None:
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed (apt-get install debootstrap)")
    with tempfile.TemporaryDirectory(prefix="vigie-rootfs-") as folder:
        rootfs = Path(folder) / "rootfs"
        include = f"--include={','.join(BASE_PACKAGES)}"
        run(["debootstrap", "--variant=minbase", include, SUITE, str(rootfs), MIRROR])
        for part in BASE_TRIM:
            shutil.rmtree(rootfs / part, ignore_errors=True)
            (rootfs / part).mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."])
        partial.replace(tarball)


def build_package(out: Path) -> Path:
    """vigie's own wheel, built from the checkout into ``out``."""
    flags = ["--quiet", "--no-deps", "--no-build-isolation"]
    run([sys.executable, "-m", "pip", "wheel", *flags, f"--wheel-dir={out}", str(ROOT)])
    return next(out.glob("vigie-*.whl"))


def image_python(base: str) -> str:
    """The Python version of ``base`` (e.g. ``3.11.2``)."""
    probe = "import platform; print(platform.python_version())"
    flags = ["--rm", "--network=host", "--entrypoint=python3"]
    done = run(["docker", "run", *flags, base, "-c", probe])
    return done.stdout.strip()


def builder(version: str) -> Path:
    """A venv on the host whose interpreter is the image's version, for ``pip wheel``.

    Dependencies carry markers on the full Python version (redis needs async-timeout below
    3.11.3), so the wheelhouse is resolved by the same version the image runs:
    ``$VIGIE_IMAGE_PYTHON``, else the host's Debian ``/usr/bin/python3`` (the base's suite).
    """
    interpreter = os.environ.get("VIGIE_IMAGE_PYTHON", "/usr/bin/python3")
    found = run([interpreter, "-c", "import platform; print(platform.python_version())"])
    if found.stdout.strip() != version:
        raise RuntimeError(
            f"{interpreter} is Python {found.stdout.strip()}, the image's is {version}: "
            "set VIGIE_IMAGE_PYTHON to an interpreter of the image's version"
        )
    venv = cache_dir() / f"builder-{version}"
    if not (venv / ".ready").exists():
        shutil.rmtree(venv, ignore_errors=True)
        run([interpreter, "-m", "venv", str(venv)])
        tools = ["pip>=24", "wheel", "setuptools>=69,<81"]
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", *tools])
        (venv / ".ready").touch()
    return venv / "bin" / "python"


def wheelhouse(extras: str, package: Path, python: Path) -> Path:
    """The wheels of vigie's dependencies for ``extras`` (and pip's), built by ``python``.

    Cached under the hash of the project's dependency lists, the extras and the interpreter.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [project["dependencies"], project["optional-dependencies"], extras, str(python)]
    key = json.dumps(wanted, sort_keys=True).encode()
    house = cache_dir() / "wheelhouse" / f"{extras.replace(',', '-')}-{_digest(key)}"
    if house.exists():
        return house
    partial = house.with_name(house.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    wanted = [f"{package}[{extras}]", "pip"]
    run([str(python), "-m", "pip", "wheel", "--quiet", f"--wheel-dir={partial}", *wanted])
    for own in partial.glob("vigie-*.whl"):
        own.unlink()  # the package itself is built fresh for every image
    partial.replace(house)
    return house


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def build(target: Target, base: str | None = None, tag: str | None = None) -> str:
    """Build one image; returns its tag."""
    base = base or ensure_base()
    with tempfile.TemporaryDirectory(prefix="vigie-image-") as folder:
        context = Path(folder)
        for part in ("wheelhouse", "package", "tools"):
            (context / part).mkdir()
        package = build_package(context / "package")
        python = builder(image_python(base))
        for wheel in wheelhouse(target.extras, package, python).iterdir():
            into = "tools/pip.whl" if wheel.name.startswith("pip-") else f"wheelhouse/{wheel.name}"
            os.link(wheel, context / into)
        specs = shutil.ignore_patterns("README.md")
        shutil.copytree(ROOT / "models", context / "models", ignore=specs)
        name = tag or target.tag
        flags = [f"--file={DOCKERFILE}", f"--target={target.name}", f"--tag={name}"]
        flags += ["--quiet", "--network=host", f"--build-arg=BASE_IMAGE={base}"]
        # The classic builder: BuildKit needs the buildx plugin, which Debian's engine lacks.
        run(["docker", "build", *flags, str(context)], env={**os.environ, "DOCKER_BUILDKIT": "0"})
    return name


def size_mb(tag: str) -> float:
    """An image's size, in MB (10^6 bytes), as the engine reports it."""
    done = run(["docker", "image", "inspect", "--format", "{{.Size}}", tag])
    return int(done.stdout.strip()) / 1e6


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="build images")
    make.add_argument("targets", nargs="+", choices=[*TARGETS, "all"])
    make.add_argument("--base", help="base image (default: the Debian minbase made here)")
    sub.add_parser("sizes", help="the size of each image built")
    args = parser.parse_args(argv)
    with engine():
        if args.command == "sizes":
            for target in TARGETS.values():
                if image_exists(target.tag):
                    print(f"{target.tag}\t{size_mb(target.tag):.0f} MB")
            return 0
        names = list(TARGETS) if "all" in args.targets else args.targets
        for name in names:
            began = time.monotonic()
            tag = build(TARGETS[name], base=args.base)
            print(f"{tag}\t{size_mb(tag):.0f} MB\tbuilt in {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
