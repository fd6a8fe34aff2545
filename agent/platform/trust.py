"""Which certificate authorities TLS trusts by default: the operating system's, not certifi's.

A government's private CA is added the normal way — `update-ca-certificates` on Debian,
`update-ca-trust` on Red Hat, the Keychain on macOS, the certificate store on Windows — and
appban must honour it as every other program on the machine does. requests alone would use the
certifi bundle that ships with it, which knows nothing of that CA.

Linux: the bundle OpenSSL itself uses (its default file, honouring SSL_CERT_FILE and
SSL_CERT_DIR), else the distributions' well-known bundle paths. Windows and macOS keep no such
file, so there the `truststore` library hands verification to the OS's own API. The override is
the config's `ca_bundle` (trust exactly that file), or SSL_CERT_FILE for the whole process.
"""

from __future__ import annotations

import logging
import os
import sys

from agent.log import log_event

logger = logging.getLogger(__name__)

DISTRIBUTION_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine, Arch, Gentoo
    "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, CentOS
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",  # RHEL (the extracted form)
    "/etc/ssl/ca-bundle.pem",  # openSUSE
    "/etc/ssl/cert.pem",  # macOS and the BSDs
)


def linux_bundle() -> str | None:
    """Return the CA file (or hashed folder) OpenSSL verifies with on this system, or None.

    Why OpenSSL's own answer first: it honours SSL_CERT_FILE/SSL_CERT_DIR as every OpenSSL
    program does, and it is what `curl` and the distribution's Python use.
    """
    import ssl  # ~7 ms and libssl mapped: only once something is fetched over TLS, not per command

    paths = ssl.get_default_verify_paths()
    if paths.cafile and os.path.isfile(paths.cafile):
        return paths.cafile
    found = next((path for path in DISTRIBUTION_BUNDLES if os.path.isfile(path)), None)
    if found:
        return found
    return paths.capath if paths.capath and os.path.isdir(paths.capath) else None


def _use_truststore() -> bool:
    """Make the ssl module verify through the OS (Windows, macOS); return False if truststore is missing."""
    try:
        import truststore
    except ImportError:
        return False
    truststore.inject_into_ssl()
    return True


def system_trust(platform: str = sys.platform) -> str | bool:
    """Return what requests' `verify=` needs to trust the system's CAs: a CA file or folder path
    (Linux), or True once truststore verifies through the OS (Windows, macOS). When neither is
    found, log it and return True (certifi), so TLS stays verified."""
    if platform in ("win32", "darwin") and _use_truststore():
        return True
    found = linux_bundle()
    if found is None:
        log_event(logger, logging.WARNING, "tls.no_system_store", fallback="certifi")
        return True
    return found
