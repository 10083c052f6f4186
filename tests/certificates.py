"""A self-signed TLS certificate for a test server on loopback, as a client that
trusts its own CA would use it (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path

    @property
    def serve_args(self) -> tuple[str, ...]:
        """`realtime serve` serves TLS with these."""
        return ("--ssl-certfile", str(self.certfile), "--ssl-keyfile", str(self.keyfile))

    def trusted(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (e.g. httpx's `verify`)."""
        return ssl.create_default_context(cafile=self.certfile)


def self_signed(folder: Path) -> Certificate:
    """A certificate for 127.0.0.1 and localhost, valid for a day, and its key, in `folder`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # Its own CA, so that a trust store can hold it as a root.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = Certificate(folder / "cert.pem", folder / "key.pem")
    files.certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
