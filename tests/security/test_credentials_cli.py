"""``fleet credentials`` and ``fleet server``'s secure default, from the outside: files readable
by their owner only, the context the other commands find, one-line errors with exit codes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

from harmony_fleet.adapters.nats.server import EmbeddedNats
from tests.helpers import eventually, fleet_cmd, run_fleet


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_issue_writes_owner_only_creds_and_the_ca(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    store = ("--store-dir", str(nats_server.store_dir))
    out = tmp_path / "edge-07.creds"
    done = run_fleet("credentials", "issue", "--device", "edge-07", "--out", str(out), *store)
    assert done.returncode == 0, done.stderr
    assert _mode(out) == 0o600
    assert (tmp_path / "edge-07-ca.pem").read_bytes() == nats_server.auth.ca_file.read_bytes()
    assert "--nats-creds" in done.stderr
    again = run_fleet("credentials", "issue", "--device", "edge-07", "--out", str(out), *store)
    assert again.returncode == 2 and "exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    viewer = run_fleet(
        "credentials", "issue", "--role", "viewer", "--out", str(tmp_path / "v.creds"), *store
    )
    assert viewer.returncode == 0, viewer.stderr
    listed = run_fleet("credentials", "list", *store)
    assert "edge-07" in listed.stdout and "viewer" in listed.stdout


def test_the_auth_setup_and_the_context_are_owner_only(nats_server: EmbeddedNats) -> None:
    auth = nats_server.auth.root
    assert _mode(auth) == 0o700
    for secret in ("operator.nk", "fleet.nk", "sys.nk", "sys.creds", "admin.creds", "issued.json"):
        assert _mode(auth / secret) == 0o600, secret
    assert _mode(auth / "tls" / "server-key.pem") == 0o600
    context = Path(os.environ["XDG_CONFIG_HOME"]) / "harmony-fleet"
    assert _mode(context) == 0o700
    for name in ("context.json", "admin.creds", "ca.pem"):
        assert _mode(context / name) == 0o600, name


def test_bad_inputs_say_what_is_wrong_in_one_line(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    unreadable = run_fleet("devices", "--nats-creds", str(tmp_path / "missing.creds"))
    assert unreadable.returncode == 2 and "--nats-creds" in unreadable.stderr
    other_ca = tmp_path / "ca.pem"
    other_ca.write_bytes((nats_server.auth.tls_dir / "server.pem").read_bytes())
    wrong_ca = run_fleet("devices", "--nats-tls-ca", str(other_ca))
    assert wrong_ca.returncode == 2 and "not signed by the CA" in wrong_ca.stderr
    env_context = subprocess.run(
        fleet_cmd("devices"),
        capture_output=True,
        text=True,
        env={**os.environ, "FLEET_CONTEXT": str(tmp_path / "nope.json")},
        timeout=30,
    )
    assert env_context.returncode == 2 and "nope.json does not exist" in env_context.stderr
    no_store = run_fleet("credentials", "list", "--store-dir", str(tmp_path / "none"))
    assert no_store.returncode == 2 and "fleet server" in no_store.stderr
    unknown = run_fleet(
        "credentials", "revoke", "--device", "nobody", "--store-dir", str(nats_server.store_dir)
    )
    assert unknown.returncode == 3
    for out in (unreadable, wrong_ca, env_context, no_store, unknown):
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr


async def test_fleet_server_is_secure_by_default_and_loud_when_not(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}

    def start(*flags: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            fleet_cmd(
                "server", "--listen", "127.0.0.1:-1", "--store-dir", str(tmp_path / "s"), *flags
            ),
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    for flags, expected in (((), "TLS and credentials required"), (("--insecure",), "WARNING")):
        proc = start(*flags)
        try:
            assert proc.stderr is not None
            said: list[str] = []
            while len(said) < 8 and not any("NATS with JetStream at" in x for x in said):
                said.append(proc.stderr.readline())  # the warnings, then the start line
            assert any("NATS with JetStream at" in line for line in said), said
            assert expected in "".join(said), said
            if flags:
                assert "INSECURE" in "".join(said)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, "SIGTERM stops it cleanly"
    await eventually((tmp_path / "config" / "harmony-fleet" / "context.json").exists)


def test_transport_flags_from_the_outside(nats_server: EmbeddedNats) -> None:
    plain = run_fleet("devices", "--nats", "nats://192.0.2.10:4222")
    assert plain.returncode == 2 and "tls://192.0.2.10:4222" in plain.stderr
    secret = run_fleet("devices", "--nats", "tls://edge:hunter2@127.0.0.1:4222")
    assert secret.returncode == 2 and "hunter2" not in secret.stderr
    tls = nats_server.auth.tls_dir
    with_cert = run_fleet(
        "devices",
        *(
            "--nats-tls-cert",
            str(tls / "server.pem"),
            "--nats-tls-key",
            str(tls / "server-key.pem"),
        ),
    )
    assert with_cert.returncode == 0, with_cert.stderr
    for out in (plain, secret):
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_password_on_the_command_line_is_refused_but_taken_from_the_environment(
    nats_server: EmbeddedNats,
) -> None:
    argv = run_fleet("devices", "--nats-user", "edge", "--nats-password", "hunter2")
    assert argv.returncode == 2 and "FLEET_NATS_PASSWORD" in argv.stderr
    assert "hunter2" not in argv.stderr
    env = subprocess.run(
        fleet_cmd("devices", "--nats-user", "edge"),
        capture_output=True,
        text=True,
        env={**os.environ, "FLEET_NATS_PASSWORD": "hunter2"},
        timeout=30,
    )
    # Taken (and refused by this server, which knows no such user): not a flag error.
    assert "--nats-password" not in env.stderr, env.stderr
