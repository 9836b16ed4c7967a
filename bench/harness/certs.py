"""Certificates for the run, made fresh into the run's temporary folder.

The main pair (ECDSA P-256, and RSA-2048 for the handshake scenario) is made by openssl
for `localhost`, the name every load generator connects to. Rotations and the scale runs
need hundreds to thousands of certificates: bench-tools makes those (ECDSA P-256 too)
in one process rather than one openssl process each.
"""

import hashlib
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

HOST = "localhost"


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path

    def pem(self):
        return self.cert.read_text(), self.key.read_text()

    def fingerprint(self):
        """SHA-256 of the leaf certificate's DER, as bench-tools probe prints it."""
        text = self.cert.read_text()
        first = text[: text.index("-----END CERTIFICATE-----") + 25]
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()


def openssl_pair(folder: Path, name: str, kind: str) -> CertPair:
    """A self-signed certificate for HOST: kind "ecdsa" (P-256) or "rsa" (2048 bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    key_opts = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ecdsa"
                else ["-newkey", "rsa:2048"])
    pair = CertPair(folder / f"{name}.crt", folder / f"{name}.key")
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "30", *key_opts,
         "-subj", f"/O=Portcullis bench TEST-ONLY/CN={HOST}",
         "-addext", f"subjectAltName=DNS:{HOST}",
         "-keyout", pair.key, "-out", pair.cert],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return pair


def bulk_pairs(tools: Path, folder: Path, count: int, name_pattern: str):
    """count ECDSA P-256 pairs from bench-tools; name_pattern's {} becomes the index."""
    subprocess.run([tools, "certs", "--count", str(count), "--name", name_pattern,
                    "--out", folder], check=True)
    return [CertPair(folder / f"{i}.crt", folder / f"{i}.key") for i in range(count)]
