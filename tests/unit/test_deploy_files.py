"""Deployment files that cannot run here (systemd, Docker) are at least checked for structure:
the systemd unit with `systemd-analyze verify` when present and a small INI parse always, the
compose file with a small indentation parse (PyYAML is not a dependency), the Dockerfile by its
instructions."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.config import VARIABLES, load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "enhanced-scheduler.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "env.example"
DEFAULTS = load_settings({}, env_file="")

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "CapabilityBoundingSet": "",
}


# -- systemd ----------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: [Section], Key=Value (keys may repeat), # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if match := re.fullmatch(r"\[([A-Za-z]+)\]", line):
            assert match[1] not in sections, f"line {number}: section [{match[1]}] repeated"
            current = sections[match[1]] = {}
            continue
        match = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", line)
        assert match, f"line {number} is neither [Section] nor Key=Value: {raw!r}"
        assert current is not None, f"line {number}: {raw!r} outside any section"
        assert not raw.endswith("\\"), f"line {number}: continuation lines are not used"
        current.setdefault(match[1], []).append(match[2].strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span as used in the unit: '45', '45s', '2min', '1min 30s'."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert parts and "".join(n + u for n, u in parts) == value.replace(" ", ""), value
    return sum(float(n) * units[u] for n, u in parts)


def test_systemd_unit_is_type_notify_with_restart_watchdog_and_hardening() -> None:
    unit = parse_unit(UNIT.read_text())
    assert set(unit) == {"Unit", "Service", "Install"}
    service = {key: values[-1] for key, values in unit["Service"].items()}

    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert seconds(service["RestartSec"]) > 0
    assert service["KillMode"] == "mixed"
    assert service["User"] not in ("root", "0")
    # The daemon pings every second: the watchdog allows plenty of slack, never less than 2 s.
    assert seconds(service["WatchdogSec"]) >= 2
    # systemd must not SIGKILL a daemon that is still draining jobs, or still waiting for
    # PostgreSQL and Redis before READY=1.
    assert seconds(service["TimeoutStopSec"]) > DEFAULTS.shutdown_timeout + 5
    assert seconds(service["TimeoutStartSec"]) > DEFAULTS.startup_timeout
    assert service["EnvironmentFile"] == "/etc/enhanced-scheduler/env"
    assert service["WorkingDirectory"].startswith("/")
    program, *args = service["ExecStart"].split()
    assert program.startswith("/") and program.endswith("/python")
    assert args == ["scheduler.py", "run"]
    assert {key: service.get(key) for key in HARDENING} == HARDENING
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """Unknown keys or bad values make `verify` print a line (its exit code stays 0 for them)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        parse_unit(UNIT.read_text())  # the structural check above still holds
        return
    # verify also checks that ExecStart exists: point it at this checkout's interpreter.
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text())
    text = re.sub(r"(?m)^WorkingDirectory=.*$", f"WorkingDirectory={ROOT}", text)
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def test_env_example_lists_every_variable_and_its_values_load() -> None:
    text = ENV_EXAMPLE.read_text()
    missing = [name for name in VARIABLES if not re.search(rf"(?m)^#?{name}=", text)]
    assert missing == []
    active: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep and name in VARIABLES, f"unknown variable line: {line!r}"
            active[name] = value
    load_settings(active, env_file="")  # raises on any value the daemon would refuse
    assert "INSTANCE_ID" not in active  # one shared file must not give two hosts one identity


# -- Docker -----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    by_name: dict[str, list[str]] = {}
    for name, args in instructions:
        by_name.setdefault(name, []).append(args)
    assert by_name["FROM"] == ["python:3.11-slim"]
    user = by_name["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert [n for n, _ in instructions].index("USER") > max(
        i for i, (n, _) in enumerate(instructions) if n == "RUN"
    ), "USER must come after every RUN that needs root"
    assert any("pip install -r requirements.txt" in r for r in by_name["RUN"])
    (health,) = by_name["HEALTHCHECK"]
    assert "/health" in health and "urllib" in health and "curl" not in health
    assert "HTTP_HOST=0.0.0.0" in " ".join(by_name["ENV"])
    assert by_name["CMD"] == ['["python", "scheduler.py", "run"]']
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)


@dataclass
class Node:
    """One line of a YAML block mapping or sequence, and the lines nested under it."""

    text: str
    children: list[Node] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.text.partition(":")[0].strip()

    @property
    def value(self) -> str:
        return self.text.partition(":")[2].strip().strip("\"'")

    def __getitem__(self, key: str) -> Node:
        for child in self.children:
            if not child.text.startswith("- ") and child.key == key:
                return child
        raise KeyError(f"{key!r} not under {self.text!r}")

    def keys(self) -> list[str]:
        return [c.key for c in self.children if not c.text.startswith("- ")]


def parse_yaml_tree(text: str) -> Node:
    """The indentation tree of a block-style YAML file: enough to check its structure."""
    root = Node("<root>")
    stack: list[tuple[int, Node]] = [(-1, root)]
    for number, raw in enumerate(text.splitlines(), 1):
        assert "\t" not in raw, f"line {number}: tab in YAML"
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip())
        node = Node(re.sub(r"\s+#.*$", "", raw.strip()))
        while stack[-1][0] >= indent:
            stack.pop()
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


@pytest.fixture(scope="module")
def compose() -> Node:
    return parse_yaml_tree((DEPLOY / "docker-compose.yml").read_text())


def test_compose_has_postgres_redis_a_migration_and_two_scheduler_replicas(compose: Node) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "scheduler"} <= set(services.keys())
    assert services["postgres"]["image"].value == "postgres:15"
    assert services["redis"]["image"].value == "redis:7"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"].value, f"{name} has no health check"

    migrate = services["migrate"]
    assert "migrate" in migrate["command"].value
    assert migrate["restart"].value == "no"

    scheduler = services["scheduler"]
    assert int(scheduler["deploy"]["replicas"].value) >= 2
    assert "run" in scheduler["command"].value
    needs = scheduler["depends_on"]
    assert needs["migrate"]["condition"].value == "service_completed_successfully"
    assert needs["postgres"]["condition"].value == "service_healthy"
    assert needs["redis"]["condition"].value == "service_healthy"
    assert seconds(scheduler["stop_grace_period"].value) > DEFAULTS.shutdown_timeout
    for service in (migrate, scheduler):
        assert service["build"].value == "*scheduler-build"
        assert service["environment"].value == "*scheduler-env"


def test_compose_environment_and_build_anchors(compose: Node) -> None:
    build = compose["x-scheduler-build"]
    assert build.value == "&scheduler-build"
    context = DEPLOY / build["context"].value
    assert (context / build["dockerfile"].value).is_file()

    env = compose["x-scheduler-env"]
    assert env.value == "&scheduler-env"
    names = set(env.keys())
    assert {"DATABASE_URL", "REDIS_URL"} <= names <= set(VARIABLES)
    # Replicas share one environment: a fixed INSTANCE_ID would give both the same identity.
    assert "INSTANCE_ID" not in names
    assert env["REDIS_URL"].value.startswith("redis://redis:")
    assert "@postgres:5432/" in env["DATABASE_URL"].value
