"""Certificates for the TLS tests, made fresh in a temporary directory: a CA,
a broker certificate for 127.0.0.1 and localhost, and client certificates
(good, from another CA, expired), each written as PEM files the way Kafka's
PEM settings take them: a keystore file holds the private key and the
certificate chain, a truststore file the CA certificates."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(**parts: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in parts.items()])


@dataclass
class Issued:
    key_path: Path    # the private key alone (librdkafka's ssl.key.location)
    cert_path: Path   # the certificate alone (librdkafka's ssl.certificate.location)
    keystore: Path    # key and certificate chain together (Kafka's PEM keystore)


class Authority:
    def __init__(self, dir: Path, name: str):
        self.dir = dir
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = _name(O="Weir tests", CN=name)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.path = dir / f"{name}.ca.pem"
        self.path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, label: str, subject: x509.Name, server: bool = False,
              expired: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        if expired:
            before, after = now - datetime.timedelta(days=10), now - datetime.timedelta(days=1)
        else:
            before, after = now - datetime.timedelta(days=1), now + datetime.timedelta(days=30)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(before).not_valid_after(after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            # A broker's certificate is also its client certificate toward other brokers.
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
                else [ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False)
        )
        if server:
            # Every address the tests' clusters listen on: 127.0.0.1 to 127.0.0.16.
            ips = [x509.IPAddress(ipaddress.ip_address(f"127.0.0.{i}")) for i in range(1, 17)]
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost"), *ips]), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        out = Issued(self.dir / f"{label}.key.pem", self.dir / f"{label}.cert.pem",
                     self.dir / f"{label}.keystore.pem")
        out.key_path.write_bytes(key_pem)
        out.cert_path.write_bytes(cert_pem)
        out.keystore.write_bytes(key_pem + cert_pem + self.cert.public_bytes(serialization.Encoding.PEM))
        return out


class Pki:
    """The CA, the broker's keystore, and clients: ``alice`` (CN=alice, OU=eng),
    ``ops`` (CN=bob, OU=ops), ``stranger`` (signed by another CA) and
    ``expired``."""

    def __init__(self, dir: Path):
        dir.mkdir(parents=True, exist_ok=True)
        self.ca = Authority(dir, "ca")
        self.other_ca = Authority(dir, "other-ca")
        self.broker = self.ca.issue("broker", _name(O="Weir tests", CN="localhost"), server=True)
        self.alice = self.ca.issue("alice", _name(C="US", O="Weir", OU="eng", CN="alice"))
        self.ops = self.ca.issue("ops", _name(C="US", O="Weir", OU="ops", CN="bob"))
        self.stranger = self.other_ca.issue("stranger", _name(O="Elsewhere", CN="mallory"))
        self.expired = self.ca.issue("expired", _name(O="Weir", OU="eng", CN="old"), expired=True)
