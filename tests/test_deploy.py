"""The deployment files agree with the code: compose file, RabbitMQ definitions, env example, Dockerfile, schemas.

No services are needed; nothing here starts Docker.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from cfv.broker.topology import REQUIRED_PLUGIN, definitions
from cfv.settings import Settings
from cfv.store.queries import all_names, query
from cfv_schemas.export import rendered
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "cfv.env.example"
DEFINITIONS = ROOT / "deploy" / "rabbitmq-definitions.json"
RABBITMQ_DIR = ROOT / "deploy" / "rabbitmq"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"

CFV_SERVICES = ("migrate", "gateway", "worker", "relay", "webhooks")


def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as Compose reads an env_file (comments and blank lines skipped)."""
    found: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number} is not KEY=value"
        assert key not in found, f"{path.name}:{number} sets {key} twice"
        assert not value.startswith(("'", '"')) and " #" not in value, f"{path.name}:{number}: keep values plain"
        found[key] = value
    return found


def env_files(service: dict[str, Any]) -> list[str]:
    entries = service.get("env_file", [])
    entries = [entries] if isinstance(entries, str) else entries
    return [entry if isinstance(entry, str) else entry["path"] for entry in entries]


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """What a service's container gets from env_file and environment (the latter wins, as in Compose), with the
    variables of the shell it interpolates (``${NAME:-default}``) unset."""
    environment: dict[str, str] = {}
    for path in env_files(service):
        environment.update(read_env_file(ROOT / path))
    declared = service.get("environment", {})
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    environment.update({key: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value)) for key, value in declared.items()})
    return environment


def setting_default(name: str) -> Any:
    """A field's default from the code, untouched by CFV_* variables or a .env file."""
    return Settings.model_fields[name].default


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/", "~")):
            mounts.append((source, target))
    return mounts


def test_compose_has_the_dependencies_and_every_role() -> None:
    services = compose()["services"]
    assert {"postgres", "rabbitmq", "redis", *CFV_SERVICES} <= set(services)
    for name in ("postgres", "rabbitmq", "redis"):
        assert "healthcheck" in services[name], name
        assert not services[name].get("depends_on"), f"{name} must start alone (docker compose up -d {name})"


def test_only_the_shell_gives_the_secret_keys() -> None:
    """No key is written in the compose file or the env example (it would be everyone's): the gateway, which seals
    webhooks' secrets, and the delivery process, which opens them, take it from the shell or .env."""
    document = compose()
    assert read_env_file(ENV_EXAMPLE)["CFV_SECRET_KEYS"] == ""
    for name in ("gateway", "webhooks"):
        assert document["services"][name]["environment"]["CFV_SECRET_KEYS"] == "${CFV_SECRET_KEYS:-}", name
    assert "CFV_SECRET_KEYS" not in document["x-cfv"].get("environment", {})


def test_every_long_running_cfv_service_checks_its_readiness_probe() -> None:
    """The healthcheck asks the monitoring port the service's own settings give it (CFV_METRICS_HOST/PORT)."""
    document = compose()
    for name in ("gateway", "worker", "relay", "webhooks"):
        service = document["services"][name]
        environment = service_environment(service)
        settings = Settings.model_validate({k.removeprefix("CFV_").lower(): v for k, v in environment.items()
                                            if k.startswith("CFV_")})
        assert settings.metrics_port, name
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD", name
        host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "127.0.0.1") else settings.metrics_host  # noqa: S104
        assert f"http://{host}:{settings.metrics_port}/readyz" in " ".join(test), name


def test_cfv_services_run_one_image_built_once_from_this_repository() -> None:
    services = compose()["services"]
    builders = [name for name in CFV_SERVICES if "build" in services[name]]
    assert builders == ["migrate"], builders
    build = services["migrate"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    assert context in (".", "./")
    images = {services[name].get("image") for name in CFV_SERVICES}
    assert len(images) == 1 and None not in images, images
    for name in CFV_SERVICES:
        if name not in builders:
            assert services[name].get("pull_policy") == "never", name  # the image is built here, not pulled
        assert services[name]["command"][:2] == ["cfv", name], name


def test_gateway_publishes_8080() -> None:
    ports = [str(port) for port in compose()["services"]["gateway"]["ports"]]
    assert any(port.split(":")[-2:] == ["8080", "8080"] for port in ports), ports


def test_startup_order() -> None:
    services = compose()["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("gateway", "worker", "relay", "webhooks"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["rabbitmq"]["condition"] == "service_healthy", name
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_cfv_services_point_at_the_compose_services() -> None:
    document = compose()
    postgres_password = document["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    for name in CFV_SERVICES:
        environment = service_environment(document["services"][name])
        database = urlsplit(environment["CFV_DATABASE_URL"])
        assert database.scheme in ("postgres", "postgresql") and database.hostname == "postgres", name
        assert database.password == postgres_password, name
        amqp = urlsplit(environment["CFV_AMQP_URL"])
        assert amqp.scheme == "amqp" and amqp.hostname == "rabbitmq", name
        assert environment.get("CFV_HTTP_HOST", "0.0.0.0") == "0.0.0.0", name  # noqa: S104
    gateway = service_environment(document["services"]["gateway"])
    redis = urlsplit(gateway["CFV_REDIS_URL"])
    assert redis.scheme == "redis" and redis.hostname == "redis", gateway["CFV_REDIS_URL"]
    assert redis.port in (None, 6379)


def test_redis_keeps_nothing_on_disk() -> None:
    """Rate-limit counters expire within a window: the Redis service needs no persistence and no volume."""
    redis = compose()["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis"
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--save") + 1] == ""
    assert command[command.index("--appendonly") + 1] == "no"
    assert not redis.get("volumes")
    assert all(str(port).startswith("127.0.0.1:") for port in redis.get("ports", []))


def test_every_file_the_compose_file_uses_exists() -> None:
    document = compose()
    for name, service in document["services"].items():
        for path in env_files(service):
            assert (ROOT / path).is_file(), f"{name}: env_file {path}"
        for source, _ in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name}: mount {source}"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":")[0] in document.get("volumes", {}), f"{name}: undeclared volume {volume}"
        if "build" in service:
            assert (ROOT / "Dockerfile").is_file()


def rabbitmq_conf() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in (RABBITMQ_DIR / "rabbitmq.conf").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def test_rabbitmq_loads_the_definitions_the_compose_file_mounts() -> None:
    mounts = {target: (ROOT / source).resolve() for source, target in bind_mounts(compose()["services"]["rabbitmq"])}
    assert mounts["/etc/rabbitmq/rabbitmq.conf"] == RABBITMQ_DIR / "rabbitmq.conf"
    assert mounts["/etc/rabbitmq/enabled_plugins"] == RABBITMQ_DIR / "enabled_plugins"
    # load_definitions names a directory; its files are imported in name order: the users, then the topology.
    directory = rabbitmq_conf()["load_definitions"].rstrip("/") + "/"
    imported = [source for target, source in sorted(mounts.items()) if target.startswith(directory)]
    assert imported == [RABBITMQ_DIR / "users.json", DEFINITIONS]


def test_rabbitmq_plugins() -> None:
    text = (RABBITMQ_DIR / "enabled_plugins").read_text().strip()
    assert re.fullmatch(r"\[[a-z_,\s]*\]\.", text), text
    plugins = {name.strip() for name in text[1:-2].split(",")}
    assert {REQUIRED_PLUGIN, "rabbitmq_management"} <= plugins


def test_rabbitmq_users_match_the_urls() -> None:
    """The AMQP user of the env example, and bin/test's guest, exist with rights on their virtual host."""
    users = json.loads((RABBITMQ_DIR / "users.json").read_text())
    amqp = urlsplit(read_env_file(ENV_EXAMPLE)["CFV_AMQP_URL"])
    vhost = unquote(amqp.path[1:]) or "/"
    for name, password in ((amqp.username, amqp.password), ("guest", "guest")):
        [user] = [u for u in users["users"] if u["name"] == name]
        assert user["password"] == password
        assert "administrator" in user["tags"]
        [permission] = [p for p in users["permissions"] if p["user"] == name and p["vhost"] == vhost]
        assert permission["configure"] == permission["write"] == permission["read"] == ".*"
    assert {"name": vhost} in users["vhosts"]


def test_definitions_file_is_the_generated_topology() -> None:
    expected = definitions(shards=setting_default("command_shards"), delivery_limit=setting_default("delivery_limit"))
    assert DEFINITIONS.read_text() == json.dumps(expected, indent=2) + "\n", (
        "deploy/rabbitmq-definitions.json is stale: run `cfv topology > deploy/rabbitmq-definitions.json`"
        " (with no CFV_COMMAND_SHARDS or CFV_DELIVERY_LIMIT set)"
    )


def test_env_example_matches_the_definitions_file() -> None:
    environment = read_env_file(ENV_EXAMPLE)
    assert int(environment["CFV_COMMAND_SHARDS"]) == setting_default("command_shards")
    assert int(environment["CFV_DELIVERY_LIMIT"]) == setting_default("delivery_limit")


def test_env_example_lists_every_setting() -> None:
    environment = read_env_file(ENV_EXAMPLE)
    expected = {f"CFV_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) == expected
    # Every value is one the settings accept.
    parsed = Settings.model_validate({key.removeprefix("CFV_").lower(): value for key, value in environment.items()})
    assert parsed.http_port == 8080


def test_env_example_documents_each_setting() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith("CFV_"):
            assert number > 0 and lines[number - 1].startswith("#"), f"{line.split('=')[0]} has no comment"


def test_json_schemas_are_current() -> None:
    directory = ROOT / "schemas" / "json"
    on_disk = {path.name: path.read_text() for path in directory.glob("*.schema.json")}
    expected = rendered()
    assert set(on_disk) == set(expected), "run: .venv/bin/python -m cfv_schemas.export"
    for name, text in expected.items():
        assert on_disk[name] == text, f"schemas/json/{name} is stale: run .venv/bin/python -m cfv_schemas.export"


def test_every_named_query_has_sql() -> None:
    names = all_names()
    assert names
    for name in names:
        assert query(name).strip(), name


PINNED_BASE = re.compile(r"python:3\.11-slim@sha256:[0-9a-f]{64}")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[str]

    def lines(self, keyword: str) -> list[str]:
        return [line.split(None, 1)[1] for line in self.instructions if line.split(None, 1)[0].upper() == keyword]


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages: continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", text).splitlines()]
    stages: list[Stage] = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            words = line.split()[1:]
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), line
            stages.append(Stage(words[0], name, []))
        else:
            assert stages, f"{line!r} before the first FROM"
            stages[-1].instructions.append(line)
    return stages


def pip_commands(run: str) -> list[list[str]]:
    """The pip invocations of a RUN line, as words (`pip ...`, `python -m pip ...`)."""
    commands = []
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        if words[:1] and words[0].rsplit("/", 1)[-1] in ("pip", "pip3"):
            commands.append(words[1:])
        elif words[1:3] == ["-m", "pip"]:
            commands.append(words[3:])
    return commands


def requirement_file(words: list[str]) -> str | None:
    return words[words.index("-r") + 1] if "install" in words and "-r" in words else None


def dockerignored() -> list[str]:
    return [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")]


def test_dockerfile() -> None:
    text = DOCKERFILE.read_text()
    assert "[dev]" not in text
    stages = dockerfile_stages()
    *builders, runtime = stages
    # Multi-stage, every stage on python:3.11-slim pinned by one digest.
    assert builders, "a build stage and a runtime stage"
    for stage in stages:
        assert PINNED_BASE.fullmatch(stage.base), f"FROM {stage.base}: pin python:3.11-slim by digest"
    assert len({stage.base for stage in stages}) == 1, "every FROM names the same digest"
    [build] = [stage for stage in builders if stage.name]
    # The build stage installs the lock with hashes, then cfv itself without dependencies.
    assert any("requirements.lock" in line for line in build.lines("COPY"))
    pips = [words for run in build.lines("RUN") for words in pip_commands(run)]
    assert any(requirement_file(words) == "requirements.lock" and "--require-hashes" in words for words in pips), pips
    assert any(requirement_file(words) == "requirements-build.lock" and "--require-hashes" in words
               for words in pips), pips
    package = [words for words in pips if {"install", "wheel"} & set(words) and "." in words]
    assert package, pips
    assert all("--no-deps" in words for words in package), package
    installs = [words for words in pips if "install" in words and ("." in words or words[-1].endswith(".whl"))]
    assert installs and all("--no-deps" in words for words in installs), pips
    # The runtime stage copies the installed result only: no pip installs there.
    copied = [line for line in runtime.lines("COPY") if line.startswith(f"--from={build.name} ")]
    assert copied, "the runtime stage copies the build stage's result"
    [(source, target)] = [tuple(line.split()[1:]) for line in copied]
    assert source == target
    assert not [words for run in runtime.lines("RUN") for words in pip_commands(run)], runtime.lines("RUN")
    assert not [line for line in runtime.lines("COPY") if not line.startswith("--from=")], "nothing from the context"
    [path] = [line for line in runtime.lines("ENV") if "PATH=" in line]
    assert f"PATH={target}/bin:" in path
    # Not root: uid 10001, made in the runtime stage.
    users = runtime.lines("USER")
    assert users and users[-1].split(":")[0] in ("10001", "cfv"), users
    assert any("--uid 10001" in run for run in runtime.lines("RUN"))
    # How it runs and stops.
    [cmd] = runtime.lines("CMD")
    assert json.loads(cmd) == ["cfv", "run"]
    [signal] = runtime.lines("STOPSIGNAL")
    assert signal in ("SIGINT", "SIGTERM"), "a signal every cfv command drains on"
    assert "8080" in runtime.lines("EXPOSE")
    assert re.search(r"\bCFV_HTTP_HOST=0\.0\.0\.0\b", " ".join(runtime.lines("ENV")))


def test_dockerfile_copies_what_the_build_context_holds() -> None:
    ignored = dockerignored()
    for stage in dockerfile_stages():
        for line in stage.lines("COPY"):
            if line.startswith("--from="):
                continue
            *sources, _ = line.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") not in ignored, f"{source} is in .dockerignore"


# The lock files (bin/lock writes them with uv; the image installs them with --require-hashes). Offline: only the
# files are read. A lock entry is `name==version \`, its `--hash=sha256:...` lines, then uv's `# via` annotation
# naming what needs it: other locked packages, or `cfv (pyproject.toml)` for a top-level requirement (an entry
# compiled from standard input, as requirements-build.lock is, has no annotation at all).
ROOT_MARKER = "cfv (pyproject.toml)"
# The image's interpreter: markers of the requirements are evaluated for it.
TARGET_ENVIRONMENT = {"python_version": "3.11", "python_full_version": "3.11.0", "implementation_name": "cpython",
                      "platform_python_implementation": "CPython", "sys_platform": "linux",
                      "platform_system": "Linux", "os_name": "posix"}


@dataclass
class Locked:
    version: Version
    line: int
    hashes: list[str] = field(default_factory=list)
    via: list[str] = field(default_factory=list)


def read_lock(path: Path) -> dict[NormalizedName, Locked]:
    entries: dict[NormalizedName, Locked] = {}
    current: Locked | None = None
    in_via = False
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if not raw.startswith((" ", "#")):  # a requirement
            requirement = Requirement(line.removesuffix("\\").strip())
            specifiers = list(requirement.specifier)
            assert len(specifiers) == 1 and specifiers[0].operator == "==", f"{path.name}:{number} is not pinned"
            [specifier] = specifiers
            assert not requirement.url and not requirement.extras, f"{path.name}:{number}: {line}"
            name = canonicalize_name(requirement.name)
            assert name not in entries, f"{path.name}:{number} locks {name} twice"
            current = entries[name] = Locked(Version(specifier.version), number)
            in_via = False
        elif line.startswith("--hash="):
            assert current is not None, f"{path.name}:{number}: a hash before any requirement"
            algorithm, _, digest = line.removeprefix("--hash=").removesuffix("\\").strip().partition(":")
            assert algorithm == "sha256" and re.fullmatch(r"[0-9a-f]{64}", digest), f"{path.name}:{number}"
            current.hashes.append(digest)
        elif line.startswith("# via"):
            assert current is not None, f"{path.name}:{number}: an annotation before any requirement"
            rest = line.removeprefix("# via").strip()
            current.via += [rest] if rest else []
            in_via = not rest
        elif line.startswith("#   ") and in_via:
            assert current is not None
            current.via.append(line.removeprefix("#").strip())
        else:
            assert line.startswith("#"), f"{path.name}:{number}: unexpected line {line!r} (pip options?)"
    return entries


def pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


def applicable(requirements: list[str]) -> list[Requirement]:
    parsed = [Requirement(text) for text in requirements]
    return [r for r in parsed if r.marker is None or r.marker.evaluate(TARGET_ENVIRONMENT)]


LOCKS = [  # (lock file, what it must satisfy, what that is)
    (LOCK, lambda: applicable(pyproject()["project"]["dependencies"]), "[project] dependencies"),
    (BUILD_LOCK, lambda: applicable(pyproject()["build-system"]["requires"]), "[build-system] requires"),
]


def missing_or_refused(locked: dict[NormalizedName, Locked], requirements: list[Requirement]) -> list[str]:
    """What the requirements ask for and the lock lacks, or pins to a version their specifier refuses."""
    problems = []
    for requirement in requirements:
        entry = locked.get(canonicalize_name(requirement.name))
        if entry is None:
            problems.append(f"{requirement} is not locked")
        elif not requirement.specifier.contains(entry.version, prereleases=True):
            problems.append(f"{requirement} refuses the locked {requirement.name}=={entry.version}")
    return problems


def unneeded(locked: dict[NormalizedName, Locked], requirements: list[Requirement]) -> list[str]:
    """Locked packages that are neither a requirement nor, following the lock's annotations, needed by one."""
    top = {canonicalize_name(r.name) for r in requirements}
    problems = []
    for name, entry in locked.items():
        # A requirement of its own (annotated as such, or compiled from standard input with no annotation)...
        if (ROOT_MARKER in entry.via or not entry.via) and name not in top:
            problems.append(f"{name} is locked as a requirement of pyproject.toml, which does not ask for it")
    reachable = set(top) & set(locked)
    grew = True
    while grew:  # ... or needed by a package that is needed
        needed = {name for name, entry in locked.items()
                  if name not in reachable and any(canonicalize_name(v) in reachable for v in entry.via)}
        reachable |= needed
        grew = bool(needed)
    problems += [f"{name} is locked but nothing needs it" for name in sorted(set(locked) - reachable)]
    return problems


@pytest.mark.parametrize(("path", "requirements", "what"), LOCKS, ids=[path.name for path, _, _ in LOCKS])
def test_lock_pins_every_package_with_hashes(path: Path, requirements: Any, what: str) -> None:
    locked = read_lock(path)
    assert locked, f"{path.name} locks nothing"
    for name, entry in locked.items():
        assert entry.hashes, f"{path.name}:{entry.line}: {name} has no hash (pip --require-hashes refuses it)"


@pytest.mark.parametrize(("path", "requirements", "what"), LOCKS, ids=[path.name for path, _, _ in LOCKS])
def test_lock_is_current(path: Path, requirements: Any, what: str) -> None:
    """Every requirement is locked to a version it allows, and the lock holds nothing that nothing needs."""
    wanted = requirements()
    assert wanted, what
    locked = read_lock(path)
    problems = missing_or_refused(locked, wanted) + unneeded(locked, wanted)
    assert not problems, f"{path.name} is stale for pyproject.toml's {what}: run bin/lock\n" + "\n".join(problems)


def test_lock_checks_can_fail() -> None:
    """The checks above on made-up locks: a missing, a refused and an unneeded package are each reported."""
    entry = Locked(Version("1.0"), 1, ["0" * 64], [ROOT_MARKER])
    child = Locked(Version("2.0"), 2, ["1" * 64], ["a"])
    locked = {canonicalize_name("a"): entry, canonicalize_name("b"): child}
    assert missing_or_refused(locked, [Requirement("a>=1")]) == []
    assert missing_or_refused(locked, [Requirement("a>=1.1")]) == ["a>=1.1 refuses the locked a==1.0"]
    assert missing_or_refused(locked, [Requirement("c")]) == ["c is not locked"]
    assert unneeded(locked, [Requirement("a")]) == []
    orphan = Locked(Version("3.0"), 3, ["2" * 64], ["gone"])
    with_orphan = {**locked, canonicalize_name("d"): orphan}
    assert unneeded(with_orphan, [Requirement("a")]) == ["d is locked but nothing needs it"]
    assert unneeded(locked, [Requirement("b")]) == [
        "a is locked as a requirement of pyproject.toml, which does not ask for it",
        "a is locked but nothing needs it"]
