"""The deploy manifests agree with the code: least-privilege RBAC that still covers every call
the operator makes, one replica, the flags that exist. (No API server checks them here.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harmony_fleet.operator.kubernetes import resources as r

yaml = pytest.importorskip("yaml", reason="PyYAML comes with the kubernetes extra")
DEPLOY = Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"


def docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def test_rbac_is_namespaced_and_covers_exactly_what_the_operator_does() -> None:
    kinds = {d["kind"] for d in docs("rbac.yaml")}
    assert kinds == {"ServiceAccount", "Role", "RoleBinding"}, "no cluster-wide grants"
    [role] = [d for d in docs("rbac.yaml") if d["kind"] == "Role"]
    grants: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                grants.setdefault(f"{group}/{res}", set()).update(rule["verbs"])
    # kopf: list/watch/get/patch (annotations); reflector: list/create + status patch.
    assert grants[f"{r.GROUP}/{r.PLURAL}"] == {"get", "list", "watch", "create", "patch"}
    assert grants[f"{r.GROUP}/{r.PLURAL}/status"] == {"get", "patch"}
    # rollout mirror: list the resources, patch only their status (people own the spec)
    assert grants[f"{r.GROUP}/{r.ROLLOUT_PLURAL}"] == {"get", "list"}
    assert grants[f"{r.GROUP}/{r.ROLLOUT_PLURAL}/status"] == {"get", "patch"}
    assert grants["/events"] == {"create"}


def test_the_deployment_runs_two_operators_in_kubernetes_mode_one_active_by_the_lease() -> None:
    [deployment] = docs("deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "fleet-operator"
    [container] = pod["containers"]
    assert container["args"][:2] == ["operator", "--kubernetes"]
    env = {e["name"] for e in container["env"]}
    assert {"FLEET_KUBERNETES_NAMESPACE", "FLEET_NATS_URL"} <= env


def test_the_operator_gets_the_release_root_from_a_config_map_and_a_writable_state_dir() -> None:
    """Without --tuf-root the Kubernetes mode does not start: the root.json is mounted from the
    ConfigMap the release manager creates, and the state dir (followed metadata) is writable
    under a read-only root filesystem."""
    [deployment] = docs("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    root = Path(args[args.index("--tuf-root") + 1])
    state = args[args.index("--state-dir") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    root_volume = volumes[mounts[str(root.parent)]]
    assert root_volume["configMap"]["name"] == "fleet-release-root"
    assert {"key": "root.json", "path": root.name} in root_volume["configMap"]["items"]
    assert "emptyDir" in volumes[mounts[state]]
    assert container["securityContext"]["readOnlyRootFilesystem"]


def test_kustomization_lists_every_manifest() -> None:
    [kustomization] = docs("kustomization.yaml")
    assert set(kustomization["resources"]) == {
        "namespace.yaml",
        "crd-device.yaml",
        "crd-rollout.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "service.yaml",
    }


def test_the_probes_and_the_metrics_port_are_the_operators_http_side() -> None:
    """--http on the port named ``metrics`` (the Service's, a ServiceMonitor's), the probes on
    /healthz and /readyz, the token file from a Secret mounted where --http-token-file says."""
    [deployment] = docs("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    args = container["args"]
    assert args[args.index("--http") + 1] == "0.0.0.0:9090"
    tokens = Path(args[args.index("--http-token-file") + 1])
    [port] = container["ports"]
    assert (port["name"], port["containerPort"]) == ("metrics", 9090)
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(tokens.parent)]]["secret"]["secretName"] == "fleet-operator-http"
    [service] = docs("service.yaml")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [monitor] = docs("servicemonitor.yaml")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    assert endpoint["bearerTokenSecret"]["name"] == "fleet-operator-http"


def test_the_operator_flags_used_by_the_manifests_exist() -> None:
    from click.testing import CliRunner

    from harmony_fleet.cli.main import cli

    out = CliRunner().invoke(cli, ["operator", "--help"]).output
    for flag in (
        "--kubernetes",
        "--namespace",
        "--kubeconfig",
        "FLEET_KUBERNETES_NAMESPACE",
        "--tuf-root",
        "--state-dir",
    ):
        assert flag in out


def test_the_operators_pending_heartbeats_fit_in_half_its_memory_limit() -> None:
    """docs/operations.md, "Memory under load": the pending budget is the default the code uses,
    and at most half the pod's memory limit."""
    from harmony_fleet.operator.runtime import DEFAULT_MAX_PENDING_BYTES

    [deployment] = docs("deployment.yaml")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    budget = int(env["FLEET_MAX_PENDING_BYTES"])
    limit = container["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    assert budget == DEFAULT_MAX_PENDING_BYTES
    assert budget <= int(limit[: -len("Mi")]) * 1024 * 1024 // 2
