"""deploy/k8s/, offline: every manifest validates against the Kubernetes API schemas in strict mode
(kubernetes-validate: unknown fields are errors), and the manifests fit each other and the image: selectors,
names, keys, ports, the probes on /healthz and /readyz, non-root with a read-only root and writable volumes
only where the service writes, a grace period that covers the drain, a NetworkPolicy with no open egress."""
from __future__ import annotations

import json
import re

import pytest

from tests.helpers.deploy import DEPLOY, K8S, PACKAGE, known_settings, require_tool

# The oldest Kubernetes the manifests are written for, and the newest kubernetes-validate knows.
OLDEST_KUBERNETES = "1.31.0"
NAMESPACE = "jak-cds"
POD_LABEL = {"app.kubernetes.io/name": "jak-cds"}
MANIFESTS = sorted(path.name for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


@pytest.fixture(scope="module")
def yaml():
    return require_tool("yaml")


@pytest.fixture(scope="module")
def docs(yaml):
    """{file name: [documents]}."""
    return {name: [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc] for name in MANIFESTS}


@pytest.fixture(scope="module")
def objects(docs):
    """{(kind, name): object}, the example Secret included."""
    result = {}
    for documents in docs.values():
        for doc in documents:
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in result, f"{key} defined twice"
            result[key] = doc
    return result


@pytest.fixture(scope="module")
def deployment(objects):
    (found,) = [doc for (kind, _), doc in objects.items() if kind == "Deployment"]
    return found


@pytest.fixture(scope="module")
def pod(deployment):
    return deployment["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    (found,) = pod["containers"]
    return found


@pytest.fixture(scope="module")
def config(objects):
    return objects[("ConfigMap", "jak-cds")]["data"]


def _versions():
    try:
        import kubernetes_validate
    except ImportError:
        return [OLDEST_KUBERNETES]
    return sorted({OLDEST_KUBERNETES, kubernetes_validate.latest_version()})


# --- schemas -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", _versions())
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates_strictly(name, version, docs):
    validator = require_tool("kubernetes_validate")
    assert docs[name], f"{name} is empty"
    for doc in docs[name]:
        validator.validate(doc, version, strict=True)     # raises ValidationError with the path and the field


def test_strict_validation_rejects_an_unknown_field(deployment):
    """The control: a misspelt field fails (so the passes above mean the fields are the API's)."""
    validator = require_tool("kubernetes_validate")
    import copy

    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(validator.ValidationError):
        validator.validate(bad, OLDEST_KUBERNETES, strict=True)


def test_kustomization_applies_every_manifest_but_the_example_secret(yaml):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and kustomization["namespace"] == NAMESPACE
    assert sorted(kustomization["resources"]) == sorted(set(MANIFESTS) - {"secret.example.yaml"})


def test_kustomization_image_is_the_deployments(yaml, container):
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    assert container["image"].rsplit(":", 1)[0] == image["name"]


# --- names, labels and selectors ---------------------------------------------------------------------------
def test_namespaced_objects_are_in_the_namespace_and_labelled(objects):
    assert ("Namespace", NAMESPACE) in objects
    for (kind, name), doc in objects.items():
        assert doc["metadata"]["labels"].items() >= POD_LABEL.items(), f"{kind}/{name}"
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE, f"{kind}/{name}"


def test_namespace_enforces_the_restricted_pod_security_standard(objects):
    labels = objects[("Namespace", NAMESPACE)]["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_selectors_find_the_pods(objects, deployment):
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects[("Service", "jak-cds")]["spec"]["selector"].items() <= pod_labels.items()
    assert objects[("PodDisruptionBudget", "jak-cds")]["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert objects[("NetworkPolicy", "jak-cds")]["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_service_port_is_the_containers(objects, container):
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": 8080}
    assert ("EXPOSE", "8080") in [tuple(line.split(None, 1)) for line in (DEPLOY / "Dockerfile").read_text().splitlines()
                                  if line.startswith("EXPOSE")]
    (service_port,) = objects[("Service", "jak-cds")]["spec"]["ports"]
    assert service_port["targetPort"] in ports


# --- replicas, autoscaling, disruption ---------------------------------------------------------------------
def test_two_replicas_at_least_and_the_autoscaler_keeps_them(objects, deployment):
    assert deployment["spec"]["replicas"] >= 2
    hpa = objects[("HorizontalPodAutoscaler", "jak-cds")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": deployment["metadata"]["name"]}
    assert 2 <= hpa["minReplicas"] <= deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_autoscaler_on_cpu_which_the_container_requests(objects, container):
    (metric,) = objects[("HorizontalPodAutoscaler", "jak-cds")]["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert "cpu" in container["resources"]["requests"]


def test_disruption_budget_leaves_a_replica(objects, deployment):
    pdb = objects[("PodDisruptionBudget", "jak-cds")]["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 1


# --- the container -----------------------------------------------------------------------------------------
def test_probes(container):
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60, "time to load the knowledge and migrate"


def test_resources_and_one_worker_per_cpu_of_the_limit(container):
    resources = container["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), kind
    assert re.fullmatch(r"[1-9]\d*", str(resources["limits"]["cpu"])), "whole CPUs: one gunicorn worker each"
    env = {item["name"]: item for item in container["env"]}
    workers = env["JAK_CDS_WORKERS"]["valueFrom"]["resourceFieldRef"]
    assert workers["resource"] == "limits.cpu" and workers["containerName"] == container["name"]
    args = container["args"]
    assert args[0] == "serve" and args[args.index("--workers") + 1] == "$(JAK_CDS_WORKERS)"
    assert args[args.index("--port") + 1] == "8080"


def test_non_root_read_only_root_no_privileges(pod, container):
    dockerfile_user = [line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines()
                       if line.startswith("USER ")][-1]
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert str(security["runAsUser"]) == dockerfile_user.split(":")[0], "the image's user"
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    own = container["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"] and not own["capabilities"].get("add")
    assert not own.get("privileged") and not pod.get("hostNetwork") and not pod.get("hostPID")
    assert pod["automountServiceAccountToken"] is False
    assert not any("hostPath" in volume for volume in pod["volumes"])


def test_writable_volumes_where_the_service_writes(pod, container, config):
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    for path in ("/tmp", config["JAK_CDS_AUDIT_SPOOL"]):
        assert path in mounts, f"{path} is not writable under a read-only root"
        mount = mounts[path]
        assert not mount.get("readOnly")
        volume = volumes[mount["name"]]
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume or "ephemeral" in volume
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), f"{path}: bounded, so it cannot fill the node"
    assert {mount["name"] for mount in container["volumeMounts"]} == set(volumes)


def test_grace_period_covers_prestop_and_the_drain(pod, container):
    """preStop, then SIGTERM: gunicorn's graceful timeout for calls in flight and the workers' audit writes."""
    import gunicorn.config

    graceful = gunicorn.config.Config().graceful_timeout
    for path in PACKAGE.rglob("*.py"):                      # the service's own setting, if it sets one
        found = re.search(r"""["']graceful_timeout["']\s*:\s*(\d+)""", path.read_text())
        if found:
            graceful = int(found.group(1))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = int(command[1])
    assert 5 <= pre_stop <= 30
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + graceful + 10


# --- settings and secrets ----------------------------------------------------------------------------------
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|DATABASE_URL", re.IGNORECASE)


def test_configmap_holds_known_non_secret_settings(config):
    assert set(config) <= known_settings(), f"not read by the service: {set(config) - known_settings()}"
    assert not [key for key in config if SECRET_WORDS.search(key)], "secrets belong in the Secret"
    assert config["JAK_CDS_AUTH"] == "required"
    servers = [server.strip() for server in config["JAK_CDS_ALLOWED_FHIR_SERVERS"].split(",")]
    assert servers and all(server.startswith("https://") for server in servers)
    assert config["JAK_CDS_PUBLIC_BASE_URL"].startswith("https://")


def test_container_settings_and_secret_keys(objects, container, pod, config):
    env_from = [source["configMapRef"]["name"] for source in container["envFrom"]]
    assert env_from == ["jak-cds"] and ("ConfigMap", "jak-cds") in objects
    names = {item["name"] for item in container["env"]} | set(config)
    assert {name for name in names if name.startswith("JAK_CDS_")} <= known_settings() | {"JAK_CDS_WORKERS"}
    secret = objects[("Secret", "jak-cds")]
    keys = set(secret["stringData"])
    for item in container["env"]:
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        if reference:
            assert reference["name"] == "jak-cds" and reference["key"] in keys
        else:
            assert "value" not in item or not SECRET_WORDS.search(item["name"]), f"{item['name']} written in"
    assert {"JAK_CDS_DATABASE_URL", "JAK_CDS_PATIENT_HASH_KEY"} <= {item["name"] for item in container["env"]}
    (volume,) = [volume for volume in pod["volumes"] if "secret" in volume]
    assert volume["secret"]["secretName"] == "jak-cds"
    assert {item["key"] for item in volume["secret"]["items"]} <= keys
    # the trusted clients file is where the ConfigMap says
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    (item,) = volume["secret"]["items"]
    assert f"{mount['mountPath']}/{item['path']}" == config["JAK_CDS_TRUSTED_CLIENTS"] and mount["readOnly"]
    clients = json.loads(secret["stringData"][item["key"]])
    assert all(client.get("iss") and (client.get("jku") or client.get("jwks")) for client in clients)


def test_example_secret_is_only_placeholders(objects):
    for key, value in objects[("Secret", "jak-cds")]["stringData"].items():
        if key != "trusted-clients.json":
            assert "CHANGE-ME" in value, f"{key}: the example must not hold a usable secret"


# --- network -----------------------------------------------------------------------------------------------
def test_network_policy_in_from_the_ehr_out_to_dns_database_and_fhir(objects):
    policy = objects[("NetworkPolicy", "jak-cds")]["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    for rule in policy["ingress"]:
        assert rule.get("from"), "an ingress rule without 'from' admits everyone"
        assert [port["port"] for port in rule["ports"]] == [8080]
    egress_ports = set()
    for rule in policy["egress"]:
        assert rule.get("to") and rule.get("ports"), "an egress rule without 'to' or 'ports' opens every destination"
        for peer in rule["to"]:
            cidr = peer.get("ipBlock", {}).get("cidr", "")
            assert cidr not in ("0.0.0.0/0", "::/0"), "egress to anywhere"
        egress_ports |= {(port["protocol"], port["port"]) for port in rule["ports"]}
    assert {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 443)} == egress_ports
