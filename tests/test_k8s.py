"""The Kubernetes manifests (deploy/k8s) are valid and agree with the code and the image.

Offline: the kustomization is rendered here (the part of Kustomize it uses: plain resource files, `namespace`,
`labels`, `images`; anything else in it fails the test rather than being ignored), every built-in object is
validated against the Kubernetes OpenAPI schemas that `kubernetes-validate` ships (strict: an unknown field fails),
and the two custom resources, whose schemas come with their operators, are checked field by field.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cfv.broker.topology import REQUIRED_PLUGIN
from cfv.settings import Settings
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
SECRET_TEMPLATE = K8S / "secret.example.yaml"
DOCKERFILE = ROOT / "Dockerfile"

ROLES = ("gateway", "worker", "relay", "webhooks")
PLACEHOLDER_KEY = "CHANGE-ME"
SECRET_SETTINGS = {"CFV_DATABASE_URL", "CFV_AMQP_URL", "CFV_REDIS_URL", "CFV_SECRET_KEYS"}
# The oldest Kubernetes these manifests are meant for, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29", latest_version())
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "IngressClass"}
CUSTOM = {("rabbitmq.com/v1beta1", "RabbitmqCluster"), ("postgresql.cnpg.io/v1", "Cluster")}
KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
# Connections a cfv process holds besides its pool (the gateway's listener, a worker's presence, the relay's lock
# and publisher session...): a generous estimate, for the connection budget below.
CONNECTIONS_BEYOND_POOL = 3


# --- rendering: the part of Kustomize the kustomization uses ---------------------------------------------------

def documents(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def image_name(image: str) -> str:
    """An image reference without its tag or digest (what a Kustomize `images` entry's `name` matches)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return name[: len(name) - len(last)] + last.split(":", 1)[0]


def pod_templates(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec", {})
    if "template" in spec:
        yield spec["template"]
    if "jobTemplate" in spec:
        yield spec["jobTemplate"]["spec"]["template"]


def containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for template in pod_templates(obj):
        yield from template["spec"].get("initContainers", [])
        yield from template["spec"]["containers"]


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    assert not unknown, f"kustomization.yaml uses {unknown}, which this test does not render: teach it"
    assert kustomization["kind"] == "Kustomization"
    objects: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        assert "://" not in resource and not resource.startswith(("github.com/", "/")), f"remote base {resource}"
        path = directory / resource
        assert path.is_file(), f"{resource}: a plain file of deploy/k8s (no remote bases, no directories)"
        objects += documents(path)
    namespace = kustomization.get("namespace")
    for obj in objects:
        if namespace and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = namespace
        for entry in kustomization.get("labels", []):
            assert set(entry) <= {"pairs", "includeTemplates", "includeSelectors"}, entry
            assert not entry.get("includeSelectors"), "selectors are immutable: keep common labels out of them"
            obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
            if entry.get("includeTemplates"):
                for template in pod_templates(obj):
                    template.setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])
        for entry in kustomization.get("images", []):
            assert set(entry) <= {"name", "newName", "newTag", "digest"}, entry
            for container in containers(obj):
                if image_name(container["image"]) == entry["name"]:
                    name = entry.get("newName", entry["name"])
                    container["image"] = (f"{name}@{entry['digest']}" if "digest" in entry
                                          else f"{name}:{entry['newTag']}" if "newTag" in entry else name)
    return objects


RENDERED = render(K8S)
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
[SECRET] = documents(SECRET_TEMPLATE)


def rendered() -> list[dict[str, Any]]:
    return copy.deepcopy(RENDERED)


def of_kind(kind: str, objects: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return [obj for obj in (RENDERED if objects is None else objects) if obj["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    [obj] = [obj for obj in of_kind(kind) if obj["metadata"]["name"] == name]
    return obj


def cfv_workloads() -> list[dict[str, Any]]:
    """The Deployments and Jobs that run the cfv image (the ones that read cfv-config)."""
    return [obj for obj in RENDERED if obj["kind"] in ("Deployment", "Job")
            and any(ref.get("configMapRef", {}).get("name") == "cfv-config"
                    for container in containers(obj) for ref in container.get("envFrom", []))]


def role_of(deployment: dict[str, Any]) -> str:
    [container] = list(containers(deployment))
    command = container.get("command", []) + container.get("args", [])
    assert command[:1] == ["cfv"] and len(command) == 2, f"{deployment['metadata']['name']}: {command}"
    return str(command[1])


def deployments() -> dict[str, dict[str, Any]]:
    """cfv's Deployments by role."""
    found = {role_of(obj): obj for obj in cfv_workloads() if obj["kind"] == "Deployment"}
    assert len(found) == len([obj for obj in cfv_workloads() if obj["kind"] == "Deployment"]), "a role twice"
    return found


def environment(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container gets: its envFrom (the ConfigMaps rendered here, the Secret template), then env."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(named("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            assert source["secretRef"]["name"] == SECRET["metadata"]["name"], source
            assert not source["secretRef"].get("optional"), "the Secret is required"
            values.update(SECRET["stringData"])
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value", "<from elsewhere>")
    return values


def settings_of(container: dict[str, Any]) -> Settings:
    """The settings a container's CFV_* variables give cfv (defaults for the rest, no .env file)."""
    values = {name.removeprefix("CFV_").lower(): value for name, value in environment(container).items()
              if name.startswith("CFV_") and value != PLACEHOLDER_KEY}
    return Settings.model_validate(values)  # model_validate ignores the process environment


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def effective_security(template: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    """The container's securityContext over the pod's (for the fields both have)."""
    pod = {key: value for key, value in template["spec"].get("securityContext", {}).items()
           if key in ("runAsNonRoot", "runAsUser", "runAsGroup", "seccompProfile")}
    return {**pod, **container.get("securityContext", {})}


def quantity(value: str | int, unit: str) -> float:
    text = str(value)
    if unit == "cpu":
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    factors = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in factors.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def dockerfile_ids() -> tuple[int, int]:
    """The uid and gid of the image's user (the Dockerfile's useradd)."""
    uid = re.search(r"--uid (\d+)", DOCKERFILE.read_text())
    gid = re.search(r"--gid (\d+)", DOCKERFILE.read_text())
    assert uid and gid
    return int(uid.group(1)), int(gid.group(1))


# --- validity -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_is_valid(version: str) -> None:
    checked = 0
    for obj in [*RENDERED, SECRET]:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} (Kubernetes {version}): {error.message} at "
                        f"{'.'.join(str(part) for part in error.path)}")
        checked += 1
    assert checked >= 10


def test_only_known_custom_resources() -> None:
    """Whatever kubernetes-validate has no schema for must be one of the two checked below."""
    for obj in RENDERED:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
        except kubernetes_validate.utils.SchemaNotFoundError:
            assert (obj["apiVersion"], obj["kind"]) in CUSTOM, f"{obj['kind']}: no schema, and not checked here"
        except kubernetes_validate.ValidationError:
            pass  # reported by test_every_built_in_object_is_valid


def test_names_are_unique_and_in_the_namespace() -> None:
    namespace = KUSTOMIZATION["namespace"]
    assert [obj["metadata"]["name"] for obj in of_kind("Namespace")] == [namespace]
    keys = [(obj["kind"], obj["metadata"]["name"]) for obj in RENDERED]
    assert len(keys) == len(set(keys)), keys
    for obj in RENDERED:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["metadata"]["name"]
    assert SECRET["metadata"].get("namespace", namespace) == namespace


def test_rendering() -> None:
    """The little Kustomize above does what Kustomize does with this kustomization."""
    gateway = deployments()["gateway"]
    assert gateway["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cfv"
    assert gateway["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "cfv"
    assert "app.kubernetes.io/part-of" not in gateway["spec"]["selector"]["matchLabels"]
    reference = "registry.example.com:5000/team/cfv:1.2@sha256:" + "0" * 64
    assert image_name(reference) == "registry.example.com:5000/team/cfv"
    assert image_name("cfv") == "cfv"


# --- the custom resources -----------------------------------------------------------------------------------

def test_rabbitmq_cluster() -> None:
    [cluster] = of_kind("RabbitmqCluster")
    assert cluster["apiVersion"] == "rabbitmq.com/v1beta1"
    assert cluster["spec"]["replicas"] == 3
    assert REQUIRED_PLUGIN in cluster["spec"]["rabbitmq"]["additionalPlugins"]
    config = dict(line.split(" = ", 1) for line in cluster["spec"]["rabbitmq"]["additionalConfig"].splitlines()
                  if line.strip() and not line.startswith("#"))
    assert config["cluster_partition_handling"] == "pause_minority"
    assert config["queue_leader_locator"] == "balanced"
    assert re.fullmatch(r"rabbitmq:3\.\d+(-management)?", cluster["spec"]["image"]), cluster["spec"]["image"]
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(cluster["spec"]["resources"][key])


def test_postgres_cluster() -> None:
    [cluster] = of_kind("Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] == 3
    assert re.fullmatch(r"ghcr\.io/cloudnative-pg/postgresql:15(\.\d+)?(-[a-z0-9-]+)?(@sha256:[0-9a-f]{64})?",
                        spec["imageName"]), spec["imageName"]
    assert spec["postgresql"]["synchronous"]["number"] >= 1
    assert spec["bootstrap"]["initdb"]["database"] == spec["bootstrap"]["initdb"]["owner"] == "cfv"
    assert spec["affinity"]["enablePodAntiAffinity"] is True


def test_the_secret_template_points_at_the_services_here() -> None:
    """The URLs name what these manifests create: the PostgreSQL cluster's -rw Service, RabbitMQ's, Redis's."""
    urls = SECRET["stringData"]
    [postgres] = of_kind("Cluster")
    [rabbitmq] = of_kind("RabbitmqCluster")
    services = {obj["metadata"]["name"]: obj for obj in of_kind("Service")}
    database = urlsplit(urls["CFV_DATABASE_URL"])
    assert database.hostname == f"{postgres['metadata']['name']}-rw" and database.port == 5432
    assert database.path == "/" + postgres["spec"]["bootstrap"]["initdb"]["database"]
    assert database.username == postgres["spec"]["bootstrap"]["initdb"]["owner"]
    for url in urls["CFV_AMQP_URL"].split(","):
        assert urlsplit(url).hostname == rabbitmq["metadata"]["name"] and urlsplit(url).port == 5672
    redis = urlsplit(urls["CFV_REDIS_URL"])
    assert redis.hostname in services and redis.port in [p["port"] for p in services[redis.hostname]["spec"]["ports"]]


def test_the_secret_is_a_template() -> None:
    assert SECRET["kind"] == "Secret"
    assert "secret.example.yaml" not in KUSTOMIZATION["resources"], "applying it would overwrite the real Secret"
    assert not of_kind("Secret"), "no Secret in the kustomization: it is created apart (kubectl, a secret manager)"
    assert set(SECRET["stringData"]) == SECRET_SETTINGS and "data" not in SECRET
    assert "CHANGE-ME" in SECRET["stringData"]["CFV_DATABASE_URL"]
    assert "CHANGE-ME" in SECRET["stringData"]["CFV_AMQP_URL"]
    # Applied as it is, the template's key stops every process at start rather than seal secrets with a known key.
    assert SECRET["stringData"]["CFV_SECRET_KEYS"] == PLACEHOLDER_KEY
    with pytest.raises(ValueError, match="not a Fernet key"):
        Settings(secret_keys=PLACEHOLDER_KEY)
    text = SECRET_TEMPLATE.read_text()
    assert "kubectl" in text and "create secret" in text


# --- cfv's settings -------------------------------------------------------------------------------------------

def test_every_cfv_variable_is_a_setting() -> None:
    known = {f"CFV_{name.upper()}" for name in Settings.model_fields}
    found: set[str] = set()
    for obj in [*RENDERED, SECRET]:
        if obj["kind"] in ("ConfigMap", "Secret"):
            found |= {key for key in {**obj.get("data", {}), **obj.get("stringData", {})} if key.startswith("CFV_")}
        for container in containers(obj):
            found |= {variable["name"] for variable in container.get("env", []) if variable["name"].startswith("CFV_")}
    assert found, "no CFV_ variable at all?"
    assert not found - known, f"not settings of cfv: {sorted(found - known)}"


def test_config_holds_no_secret_and_valid_values() -> None:
    data = named("ConfigMap", "cfv-config")["data"]
    assert not SECRET_SETTINGS & set(data), "URLs (passwords) belong in the Secret"
    assert all(isinstance(value, str) for value in data.values()), "ConfigMap values are strings: quote them"
    Settings.model_validate({key.removeprefix("CFV_").lower(): value for key, value in data.items()})


def test_every_cfv_container_reads_the_config_and_the_secret() -> None:
    workloads = cfv_workloads()
    assert {obj["kind"] for obj in workloads} == {"Deployment", "Job"}
    for obj in workloads:
        for container in containers(obj):
            references = [next(iter(source.values()))["name"] for source in container["envFrom"]]
            assert references == ["cfv-config", SECRET["metadata"]["name"]], obj["metadata"]["name"]


# --- the workloads --------------------------------------------------------------------------------------------

def test_one_deployment_per_role_and_a_migration_job() -> None:
    assert set(deployments()) == set(ROLES)
    [job] = [obj for obj in cfv_workloads() if obj["kind"] == "Job"]
    [container] = list(containers(job))
    assert container.get("command", []) + container.get("args", []) == ["cfv", "migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("Never", "OnFailure")
    assert job["spec"].get("backoffLimit", 6) >= 3, "cfv migrate fails while PostgreSQL starts: retry it"


def test_one_image_everywhere() -> None:
    images = {container["image"] for obj in cfv_workloads() for container in containers(obj)}
    assert len(images) == 1, images
    [image] = images
    assert image_name(image) != "cfv", "the kustomization's images entry names the registry"
    assert re.search(r"(:[\w.-]+|@sha256:[0-9a-f]{64})$", image.rsplit("/", 1)[-1]), f"{image}: a tag or digest"


def test_probes_ask_what_cfv_serves() -> None:
    for role, deployment in deployments().items():
        [container] = list(containers(deployment))
        settings = settings_of(container)
        assert settings.metrics_port, f"{role}: CFV_METRICS_PORT=0 serves no probe"
        assert settings.metrics_host == "0.0.0.0", f"{role}: the kubelet probes the pod's address"  # noqa: S104
        expected = {"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/livez"}
        assert {"livenessProbe", "readinessProbe"} <= set(container), role
        for probe, path in expected.items():
            if probe not in container:
                continue
            http = container[probe]["httpGet"]
            assert http["path"] == path, f"{role} {probe}"
            assert port_number(container, http["port"]) == settings.metrics_port, f"{role} {probe}"
        declared = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert declared["metrics"] == settings.metrics_port, role
        if role == "gateway":
            assert declared["http"] == settings.http_port, role
            assert settings.http_host == "0.0.0.0", "the gateway must listen on the pod's address"  # noqa: S104
        else:
            assert "http" not in declared, role


def test_prometheus_scrapes_the_monitoring_port() -> None:
    for role, deployment in deployments().items():
        [container] = list(containers(deployment))
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", role
        assert int(annotations["prometheus.io/port"]) == settings_of(container).metrics_port, role
        assert annotations.get("prometheus.io/path", "/metrics") == "/metrics", role


def test_grace_period_outlasts_the_drain() -> None:
    for role, deployment in deployments().items():
        spec = deployment["spec"]["template"]["spec"]
        [container] = list(containers(deployment))
        pause = 0
        pre_stop = container.get("lifecycle", {}).get("preStop", {})
        if "exec" in pre_stop:
            command = pre_stop["exec"]["command"]
            assert command[0] == "sleep", command
            pause = int(command[1])
        elif "sleep" in pre_stop:
            pause = int(pre_stop["sleep"]["seconds"])
        assert "terminationGracePeriodSeconds" in spec, f"{role}: say it (the default is 30)"
        timeout = settings_of(container).shutdown_timeout
        assert spec["terminationGracePeriodSeconds"] > pause + timeout, role
    assert "preStop" in deployments()["gateway"]["spec"]["template"]["spec"]["containers"][0]["lifecycle"]


def test_security() -> None:
    uid, gid = dockerfile_ids()
    for obj in cfv_workloads():
        for template in pod_templates(obj):
            spec = template["spec"]
            assert spec.get("automountServiceAccountToken") is False, obj["metadata"]["name"]
            # Service links would set CFV_<SERVICE>_PORT=tcp://... variables: CFV_* are cfv's settings.
            assert spec.get("enableServiceLinks") is False, obj["metadata"]["name"]
            assert not spec.get("hostNetwork") and not spec.get("hostPID"), obj["metadata"]["name"]
            for container in spec["containers"]:
                where = f"{obj['metadata']['name']}/{container['name']}"
                security = effective_security(template, container)
                assert security.get("runAsNonRoot") is True, where
                assert security.get("runAsUser") == uid, f"{where}: the image's uid ({uid})"
                assert security.get("runAsGroup") == gid, f"{where}: the image's gid ({gid})"
                assert security.get("readOnlyRootFilesystem") is True, where
                assert security.get("allowPrivilegeEscalation") is False, where
                assert not security.get("privileged"), where
                assert "ALL" in security.get("capabilities", {}).get("drop", []), where
                assert not security.get("capabilities", {}).get("add"), where


def test_resources_are_requested_and_limited() -> None:
    for obj in RENDERED:
        for container in containers(obj):
            where = f"{obj['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for unit in ("cpu", "memory"):
                request, limit = resources["requests"][unit], resources["limits"][unit]
                assert quantity(request, unit) <= quantity(limit, unit), f"{where} {unit}"


def test_gateway_autoscaler_and_service() -> None:
    gateway = deployments()["gateway"]
    [autoscaler] = of_kind("HorizontalPodAutoscaler")
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                       gateway["metadata"]["name"])
    assert [m["resource"]["name"] for m in autoscaler["spec"]["metrics"] if m["type"] == "Resource"] == ["cpu"]
    assert 2 <= autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]
    assert "replicas" not in gateway["spec"], "the autoscaler owns the gateway's replicas"
    # Every Deployment the autoscaler does not own says how many it wants.
    for role, deployment in deployments().items():
        if role != "gateway":
            assert deployment["spec"]["replicas"] >= 1, role
    # The Service reaches the gateways' HTTP port.
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    [container] = list(containers(gateway))
    selecting = [s for s in of_kind("Service") if s["spec"]["selector"].items() <= labels.items()]
    [service] = selecting
    assert [port_number(container, port["targetPort"]) for port in service["spec"]["ports"]] == [
        settings_of(container).http_port]


def test_scaling_limits() -> None:
    """Workers up to one per shard queue; the relay with a standby."""
    workers = deployments()["worker"]
    [container] = list(containers(workers))
    assert 1 <= workers["spec"]["replicas"] <= settings_of(container).command_shards
    assert deployments()["relay"]["spec"]["replicas"] >= 2
    assert not [h for h in of_kind("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] != deployments()["gateway"]["metadata"]["name"]]


def test_disruption_budgets_select_a_deployment() -> None:
    budgets = of_kind("PodDisruptionBudget")
    covered = set()
    for budget in budgets:
        selector = budget["spec"]["selector"]["matchLabels"]
        matching = [role for role, d in deployments().items()
                    if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matching) == 1, budget["metadata"]["name"]
        covered |= set(matching)
    assert covered == set(ROLES)


def test_selectors_match_their_templates() -> None:
    for obj in of_kind("Deployment"):
        selector = obj["spec"]["selector"]["matchLabels"]
        assert selector.items() <= obj["spec"]["template"]["metadata"]["labels"].items(), obj["metadata"]["name"]


def test_postgres_connections_suffice() -> None:
    """At their largest (the autoscaler's maximum, plus a rollout's surge), cfv's processes fit max_connections."""
    [cluster] = of_kind("Cluster")
    maximum = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    [autoscaler] = of_kind("HorizontalPodAutoscaler")
    needed = CONNECTIONS_BEYOND_POOL  # cfv migrate
    for role, deployment in deployments().items():
        replicas = autoscaler["spec"]["maxReplicas"] if role == "gateway" else deployment["spec"]["replicas"]
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        extra = math.ceil(replicas * int(surge[:-1]) / 100) if str(surge).endswith("%") else int(surge)
        [container] = list(containers(deployment))
        needed += (replicas + extra) * (settings_of(container).db_pool_size + CONNECTIONS_BEYOND_POOL)
    assert needed <= maximum - 10, f"{needed} connections at most, max_connections {maximum} (less reserved ones)"
