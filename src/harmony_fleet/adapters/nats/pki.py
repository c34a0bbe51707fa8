"""A private CA and the NATS server's certificate (the ``cryptography`` package), and secret files.

``fleet server`` makes a CA on first start and signs a server certificate for the names clients
use (``localhost``, the loopback addresses, the listen address, this host's name). Clients verify
the server against the CA bundle (``ca.pem``) that the context and ``fleet credentials issue``
hand out. Keys are ECDSA P-256, which every TLS stack (Python's ssl, Go's) takes.

Only ``fleet server`` needs this module (and ``cryptography``): it is imported when the auth
setup is first made, never on an agent's path.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harmony_fleet.adapters.nats.files import write_public, write_secret

log = logging.getLogger(__name__)

#: How long the generated CA and server certificate are valid.
VALID_DAYS = 3650
#: Valid from long before they were made: a board without a real-time clock boots minutes or
#: years behind until NTP steps it, and must still accept the server's certificate (a private
#: CA gains nothing from a tight start date).
VALID_FROM = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _names(extra_hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    hosts = {"localhost", "127.0.0.1", "::1", socket.gethostname(), *extra_hosts}
    hosts.discard("")
    hosts -= {"0.0.0.0", "::"}  # noqa: S104  (wildcard listen addresses are not names)
    out: list[x509.GeneralName] = []
    for host in sorted(hosts):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            out.append(x509.DNSName(host))
    return out


def make_ca_and_server_cert(directory: Path, *, hosts: tuple[str, ...] = ()) -> None:
    """Write ``ca.pem``, ``ca-key.pem``, ``server.pem``, ``server-key.pem`` into ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=VALID_DAYS)
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harmony-fleet NATS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = _key()
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harmony-fleet NATS")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(directory / "ca-key.pem", _pem_key(ca_key))
    write_secret(directory / "server-key.pem", _pem_key(server_key))
    write_public(directory / "server.pem", server.public_bytes(serialization.Encoding.PEM))
    write_public(directory / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    log.info("NATS CA and server certificate created", extra={"dir": str(directory)})


def make_route_cert(directory: Path, *, hosts: tuple[str, ...]) -> None:
    """Write ``route.pem``/``route-key.pem`` into ``directory``: the certificate a cluster node
    shows on its routes, signed by the CA of ``ca.pem``/``ca-key.pem`` and good both for the
    server and the client side of a route (each node dials the others and is dialled), with the
    names ``hosts`` other nodes reach it by."""
    ca = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the NATS CA key is not an ECDSA key")
    now = datetime.datetime.now(datetime.UTC)
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "harmony-fleet route")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(VALID_FROM)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_secret(directory / "route-key.pem", _pem_key(key))
    write_public(directory / "route.pem", cert.public_bytes(serialization.Encoding.PEM))
    log.info("NATS route certificate created", extra={"dir": str(directory), "hosts": hosts})
