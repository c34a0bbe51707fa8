"""``fleet operator``: run the control plane's operator in the foreground.

``--kubernetes`` adds the Kubernetes mode (``Device`` resources, see docs/kubernetes.md). It is
imported only when asked for, so the embedded mode needs neither kopf nor kubernetes_asyncio.
``--tuf-online-keys`` re-signs the signed release repository's timestamp and snapshot on a timer
(:mod:`harmony_fleet.operator.release_refresh`).
``--http HOST:PORT`` serves probes, ``/metrics``, the JSON API and the dashboard
(:mod:`harmony_fleet.operator.http`, the ``[dashboard]`` extra, imported only when asked for);
it listens before the operator connects, so ``/readyz`` answers 503 until it is ready.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harmony_fleet.adapters.nats.slow import MIN_PENDING_BYTES
from harmony_fleet.cli._common import (
    bad_flag,
    build_nats_options,
    install_stop_signals,
    log_options,
    nats_options,
    setup_logging,
    tuf_root_option,
)
from harmony_fleet.core.presence import PresencePolicy
from harmony_fleet.errors import FleetError
from harmony_fleet.operator.admission import Admit
from harmony_fleet.operator.release_refresh import ReleaseRefresh
from harmony_fleet.operator.rollouts import RolloutLoop
from harmony_fleet.operator.runtime import (
    DEFAULT_MAX_PENDING_BYTES,
    Extension,
    Operator,
    OperatorConfig,
)

if TYPE_CHECKING:  # the real imports are lazy: see _kubernetes() and _http()
    from harmony_fleet.operator.http.server import HttpServer
    from harmony_fleet.operator.kubernetes.extension import KubernetesExtension

log = logging.getLogger(__name__)


@click.command("operator")
@click.option(
    "--offline-after",
    "missed",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Missed heartbeat intervals before a device is shown offline.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(1, 3600),
    default=60.0,
    show_default=True,
    help="Seconds between writes of an unchanged device record (bounds last_seen staleness).",
)
@click.option(
    "--kv-replicas",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    help="Replicas of the KV buckets and the log stream the operator creates (3 on a 3-node "
    "cluster); existing ones with fewer are raised, never lowered.",
)
@click.option(
    "--lease-ttl",
    type=click.FloatRange(0.5, 3600),
    default=10.0,
    show_default=True,
    envvar="FLEET_OPERATOR_LEASE_TTL",
    show_envvar=True,
    help="Seconds of the operator lease: several operators may run, one is active and a "
    "standby takes over within twice this after the active one dies (docs/operations.md).",
)
@click.option(
    "--max-pending-bytes",
    type=click.IntRange(min=MIN_PENDING_BYTES),
    default=DEFAULT_MAX_PENDING_BYTES,
    show_default=True,
    envvar="FLEET_MAX_PENDING_BYTES",
    show_envvar=True,
    help="Memory the heartbeats waiting for the operator may take (payloads and overhead); "
    "past it they are dropped and counted (fleet_nats_dropped_messages_total), not buffered. "
    "Keep it well below the process's memory limit (docs/operations.md, 'Memory under load').",
)
@click.option(
    "--name",
    default="",
    envvar="FLEET_OPERATOR_NAME",
    help="This operator's name in the lease. [default: host, pid and a random suffix]",
)
@click.option(
    "--admit",
    type=click.Choice([a.value for a in Admit]),
    default=None,
    envvar="FLEET_ADMIT",
    show_envvar=True,
    help="Which devices enter the registry: 'issued' (credentials issued and not revoked: the "
    "identities bucket) or 'any' (an open server, `fleet server --insecure`). "
    "[default: issued with credentials, any without]",
)
@click.option(
    "--kubernetes",
    is_flag=True,
    envvar="FLEET_KUBERNETES",
    help="Mirror devices onto Device resources and upgrade on spec.agentVersion changes "
    "(needs the [kubernetes] extra).",
)
@click.option(
    "--namespace",
    default="default",
    show_default=True,
    envvar="FLEET_KUBERNETES_NAMESPACE",
    show_envvar=True,
    help="Namespace of the Device resources (with --kubernetes).",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    default=None,
    help="kubeconfig file (with --kubernetes); default: in-cluster, then $KUBECONFIG.",
)
@tuf_root_option(
    "The release repository's root.json: the version a rollout or a Device's "
    "spec.agentVersion names is looked up in the signed metadata (required with --kubernetes; "
    "without it no rollout starts a device)."
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/var/lib/harmony-fleet/operator"),
    show_default=True,
    envvar="FLEET_OPERATOR_STATE_DIR",
    help="Where the operator keeps the signed metadata it has followed (with --tuf-root).",
)
@click.option(
    "--tuf-online-keys",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="FLEET_TUF_ONLINE_KEYS",
    show_envvar=True,
    help="The release repository's online keys (online.keys.json: snapshot and timestamp): "
    "re-sign the published timestamp and snapshot before they expire. [default: off]",
)
@click.option(
    "--tuf-refresh-every",
    type=click.FloatRange(1, 86400),
    default=300.0,
    show_default=True,
    help="Seconds between release refresh rounds (with --tuf-online-keys).",
)
@click.option(
    "--http",
    "http_listen",
    default=None,
    envvar="FLEET_HTTP",
    show_envvar=True,
    metavar="[HOST:]PORT",
    help="Serve /healthz, /readyz, /metrics, the JSON API and the dashboard here (HOST "
    "defaults to 127.0.0.1; needs the [dashboard] extra). [default: off]",
)
@click.option(
    "--http-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="FLEET_HTTP_TOKEN_FILE",
    show_envvar=True,
    help="The tokens that may see anything beyond the probes, one a line (`fleet credentials "
    "http-token` writes one). Required with --http.",
)
@nats_options
@log_options
def operator_cmd(
    missed: int,
    refresh: float,
    kv_replicas: int,
    lease_ttl: float,
    max_pending_bytes: int,
    name: str,
    admit: str | None,
    kubernetes: bool,
    namespace: str,
    kubeconfig: str | None,
    tuf_root: Path | None,
    state_dir: Path,
    tuf_online_keys: Path | None,
    tuf_refresh_every: float,
    http_listen: str | None,
    http_token_file: Path | None,
    log_json: bool,
    log_level: str,
    **nats_kwargs: Any,
) -> None:
    """Ingest heartbeats, keep the device registry, coordinate upgrades (the active one of
    several, through the operator lease; exit 75 when it loses the lease)."""
    setup_logging(log_json, log_level)
    nats = build_nats_options(**nats_kwargs)
    config = OperatorConfig(
        nats=nats,
        kv_replicas=kv_replicas,
        presence=PresencePolicy(missed=missed, refresh_s=refresh),
        admit=Admit(admit) if admit else None,
        lease_ttl_s=lease_ttl,
        max_pending_bytes=max_pending_bytes,
        name=name,
    )
    k8s = None
    if kubernetes:
        if tuf_root is None:
            raise bad_flag(
                "--tuf-root",
                "--kubernetes resolves spec.agentVersion through the signed release metadata: "
                "give the release repository's root.json (docs/kubernetes.md)",
            )
        k8s = _kubernetes(namespace, kubeconfig, tuf_root, state_dir)
    extensions: list[Extension] = [k8s] if k8s is not None else []
    extensions.append(RolloutLoop(trust_root=tuf_root, state_dir=state_dir))
    if tuf_online_keys is not None:
        extensions.append(ReleaseRefresh(tuf_online_keys, every_s=tuf_refresh_every))
    http = _http(http_listen, http_token_file) if http_listen is not None else None
    if http is not None:
        extensions.append(http)
    raise SystemExit(asyncio.run(_run(config, extensions, k8s, http)))


def parse_listen(value: str) -> tuple[str, int]:
    """``[HOST:]PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); HOST defaults to loopback."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{value!r}: expected [HOST:]PORT", param_hint="--http")
    return host, int(port)


def _http(listen: str, token_file: Path | None) -> HttpServer:
    """The HTTP extension, imported here so that an operator without --http needs no aiohttp."""
    host, port = parse_listen(listen)
    if token_file is None:
        raise click.UsageError(
            "--http needs --http-token-file (write one with `fleet credentials http-token "
            "--out FILE`): everything beyond /healthz and /readyz needs a token"
        )
    try:
        from harmony_fleet.operator.http.server import HttpOptions, HttpServer  # noqa: PLC0415
    except ImportError as exc:
        raise click.UsageError(
            f"--http needs the [dashboard] extra (pip install 'harmony-fleet[dashboard]'): {exc}"
        ) from exc
    try:
        return HttpServer(HttpOptions(host=host, port=port, token_file=token_file))
    except FleetError as exc:
        raise click.BadParameter(str(exc), param_hint="--http-token-file") from exc


def _kubernetes(
    namespace: str, kubeconfig: str | None, tuf_root: Path, state_dir: Path
) -> KubernetesExtension:
    """The Kubernetes extension, imported here so that the embedded mode never loads kopf."""
    try:
        from harmony_fleet.operator.kubernetes.extension import (  # noqa: PLC0415
            KubernetesExtension,
            KubernetesOptions,
        )
    except ImportError as exc:
        raise click.UsageError(
            f"--kubernetes needs the [kubernetes] extra (pip install 'harmony-fleet[kubernetes]'): "
            f"{exc}"
        ) from exc
    return KubernetesExtension(
        KubernetesOptions(
            namespace=namespace, kubeconfig=kubeconfig, trust_root=tuf_root, state_dir=state_dir
        )
    )


async def _run(
    config: OperatorConfig,
    extensions: list[Extension],
    kubernetes: KubernetesExtension | None = None,
    http: HttpServer | None = None,
) -> int:
    operator = Operator(config, extensions=extensions)
    install_stop_signals(operator.stop)
    if http is not None:
        try:
            await http.start(operator)  # the probes answer while the operator connects
        except OSError as exc:
            log.error("cannot listen for --http", extra={"error": str(exc)})
            return 2
    try:
        code = await operator.run()
    finally:
        if http is not None:
            await http.close()
    if kubernetes is not None and kubernetes.failure is not None:
        return 1
    return code


def register(group: click.Group) -> None:
    group.add_command(operator_cmd)
