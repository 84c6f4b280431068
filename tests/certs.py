"""Certificates for TLS tests, made with the openssl CLI when a test runs (two days'
validity; nothing checked in that could expire)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(dir: Path, name: str):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}", cwd=dir)


def issue(dir: Path, name: str, ca: str, *extensions: str):
    """`name`.key and `name`.crt, signed by the CA `ca`."""
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=dir)
    ext = dir / f"{name}.ext"
    ext.write_text("\n".join(extensions) + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", ext.name, cwd=dir)


def make_all(dir: Path) -> Path:
    """ca, other-ca, server (for 127.0.0.1 and localhost) and client certificates in `dir`."""
    dir.mkdir(parents=True, exist_ok=True)
    make_ca(dir, "ca")
    make_ca(dir, "other-ca")
    issue(dir, "server", "ca", "subjectAltName=IP:127.0.0.1,DNS:localhost", "extendedKeyUsage=serverAuth")
    issue(dir, "client", "ca", "extendedKeyUsage=clientAuth")
    return dir


def server_args(dir: Path) -> list[str]:
    return ["--tls-cert", str(dir / "server.crt"), "--tls-key", str(dir / "server.key")]
