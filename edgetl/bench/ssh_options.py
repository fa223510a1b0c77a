"""Which `--ssh-option Key=Value` a remote bench passes to ssh: an allow-list, because a deny-list misses options.

ssh options can run code on this machine (`ProxyCommand`, `LocalCommand`, `KnownHostsCommand`, and the
libraries `PKCS11Provider` / `SecurityKeyProvider` load as soon as the connection opens), pull in other
config files (`Include`), share or forward connections, or switch off host-key checking. A bench needs none of
that: only ports, timeouts, keep-alives, identities and a strict host-key policy. Anything else is refused in
one line that points to ~/.ssh/config (or a file given with --ssh-config), where the user can set it on
purpose. Each value is checked too, and what is returned is exactly what was checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

from edgetl.errors import EdgetlError

__all__ = ["ALLOWED_OPTIONS", "check_ssh_option"]

_OPTION_RE = re.compile(r"([A-Za-z][A-Za-z0-9]*)=([^\s\x00]+)")
_PATH_RE = re.compile(r"[A-Za-z0-9_./~+,@:-]+")  # no $ or % (ssh expands ${VAR} and %-tokens), quotes, spaces
_DIGITS = re.compile(r"[0-9]{1,6}")
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
_HINT = "set it in ~/.ssh/config (or a file given with --ssh-config)"


def _int_in(lo: int, hi: int) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        # ASCII digits only: str.isdigit() is also true for '²', which int() refuses
        return None if _DIGITS.fullmatch(v) and lo <= int(v) <= hi else f"an integer in {lo}..{hi}"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v.lower() in choices else " or ".join(choices)

    return check


def _path(v: str) -> str | None:
    if not _PATH_RE.fullmatch(v) or v.startswith("-"):
        return "a path of letters, digits and _ . / ~ + , @ : - (no $, %, quotes or spaces)"
    return None


def _known_hosts(v: str) -> str | None:
    if os.path.realpath(os.path.expanduser(v)) == os.path.realpath(os.devnull):
        return "a real known_hosts file (an empty one trusts any host key)"
    return _path(v)


def _user(v: str) -> str | None:
    return None if _USER_RE.fullmatch(v) else "a user name (letters, digits, _ . -, not starting with -)"


# canonical name -> value check (None when the value is fine, else what was expected)
ALLOWED_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "Port": _int_in(1, 65535),
    "User": _user,
    "ConnectTimeout": _int_in(1, 3600),
    "ConnectionAttempts": _int_in(1, 100),
    "ServerAliveInterval": _int_in(0, 3600),
    "ServerAliveCountMax": _int_in(0, 1000),
    "TCPKeepAlive": _one_of("yes", "no"),
    "Compression": _one_of("yes", "no"),
    "AddressFamily": _one_of("any", "inet", "inet6"),
    "IdentityFile": _path,
    "IdentitiesOnly": _one_of("yes", "no"),
    "StrictHostKeyChecking": _one_of("yes", "accept-new"),
    "UserKnownHostsFile": _known_hosts,
}
_BY_LOWER = {k.lower(): k for k in ALLOWED_OPTIONS}


def check_ssh_option(opt: object) -> str:
    """`Key=Value` as ssh gets it (the key spelt canonically), or EdgetlError naming the option and the rule."""
    if not isinstance(opt, str) or not (m := _OPTION_RE.fullmatch(opt)):
        raise EdgetlError(f"--ssh-option {opt!r}: expected Key=Value (no spaces), e.g. Port=2222")
    key, value = m.groups()
    canon = _BY_LOWER.get(key.lower())
    if canon is None:
        raise EdgetlError(
            f"--ssh-option {opt!r}: not one a bench needs (allowed: {', '.join(ALLOWED_OPTIONS)}); {_HINT}"
        )
    expected = ALLOWED_OPTIONS[canon](value)
    if expected is not None:
        raise EdgetlError(f"--ssh-option {opt!r}: {canon} must be {expected}; {_HINT}")
    return f"{canon}={value}"
