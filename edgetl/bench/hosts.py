"""Validated remote hosts and paths for remote benchmarks (ssh/scp).

Everything a user types that ends up on an ssh or scp command line goes through here first:

- `parse_host("user@addr[:port]") -> Host`: user names, host names / IP literals and ports are checked
  against strict allowlists, so nothing can start with `-` (option injection such as `-oProxyCommand=...`)
  or carry shell metacharacters, whitespace or control characters.
- `safe_remote_path(path) -> str`: remote paths are restricted to a conservative character set, with no
  `..` component and no leading `-`.
- `Host.ssh_argv(...)` / `Host.scp_to_argv(...)` / `Host.scp_from_argv(...)` build argument vectors (never a
  shell string) with `--` before the destination; `remote_command(...)` quotes the words of a remote command,
  because ssh joins them into one string that the *remote* shell parses.

Import-light: no torch, nothing of edgetl but the error type.
"""

from __future__ import annotations

import ipaddress
import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from edgetl.errors import EdgetlError

__all__ = ["Host", "parse_host", "quote_remote_word", "remote_command", "safe_remote_path"]

_MAX_SPEC = 300
# POSIX-portable user names (plus upper case): letter or underscore first, so never "-..."; at most 32 chars.
_USER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
# RFC 1123 host-name label: alphanumerics and inner hyphens, 1..63 characters.
_LABEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# remote paths: a conservative, shell-inert character set (no space, quote, $, `, ;, &, |, <, >, *, ?, ...)
_PATH_CHARS_RE = re.compile(r"[A-Za-z0-9_./+=,@%-]+")
_MAX_PATH = 1024


@dataclass(frozen=True)
class Host:
    """A validated ssh destination. `user` None means ssh's default; `port` None means ssh's default (22 or
    ~/.ssh/config). `addr` is a host name, an IPv4 address or an IPv6 address (without brackets)."""

    user: str | None
    addr: str
    port: int | None = None

    def __post_init__(self) -> None:  # a Host built directly is validated like a parsed one
        if self.user is not None:
            _check_user(self.user, repr(self.user))
        _check_addr(self.addr, repr(self.addr))
        if self.port is not None and (
            isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535
        ):
            raise EdgetlError(f"remote host: port {self.port!r} must be an integer in 1..65535")

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.addr

    @property
    def destination(self) -> str:
        """`user@addr` (or `addr`) as ssh takes it: IPv6 without brackets."""
        return f"{self.user}@{self.addr}" if self.user else self.addr

    def __str__(self) -> str:
        addr = f"[{self.addr}]" if self.is_ipv6 else self.addr
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port is not None else ""
        return f"{user}{addr}{port}"

    def ssh_argv(self, *remote_args: str, ssh: str = "ssh", options: Sequence[str] = ()) -> list[str]:
        """`ssh [options] [-p PORT] -- user@addr 'quoted remote command'` as an argument vector.

        `remote_args` are the words of the remote command; they are quoted with `remote_command` because
        ssh hands the joined string to the remote login shell. `options` are the caller's own fixed ssh
        options (e.g. `["-o", "BatchMode=yes"]`), never user input.
        """
        argv = [ssh, *options]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        argv += ["--", self.destination]
        if remote_args:
            argv.append(remote_command(*remote_args))
        return argv

    def scp_target(self, remote_path: str) -> str:
        """`user@addr:path` (IPv6 in brackets) for scp, with the path checked by `safe_remote_path`."""
        addr = f"[{self.addr}]" if self.is_ipv6 else self.addr
        user = f"{self.user}@" if self.user else ""
        return f"{user}{addr}:{safe_remote_path(remote_path)}"

    def _scp_head(self, scp: str, options: Sequence[str], recursive: bool) -> list[str]:
        argv = [scp, *options]
        if recursive:
            argv.append("-r")
        if self.port is not None:
            argv += ["-P", str(self.port)]
        return argv

    def scp_to_argv(
        self,
        local_path: str,
        remote_path: str,
        *,
        recursive: bool = False,
        scp: str = "scp",
        options: Sequence[str] = (),
    ) -> list[str]:
        """Copy a local file (or directory, `recursive=True`) to `remote_path` on this host."""
        return [*self._scp_head(scp, options, recursive), "--", _local_arg(local_path), self.scp_target(remote_path)]

    def scp_from_argv(
        self,
        remote_path: str,
        local_path: str,
        *,
        recursive: bool = False,
        scp: str = "scp",
        options: Sequence[str] = (),
    ) -> list[str]:
        """Copy `remote_path` from this host to a local path."""
        return [*self._scp_head(scp, options, recursive), "--", self.scp_target(remote_path), _local_arg(local_path)]


def parse_host(spec: str) -> Host:
    """Parse `user@addr[:port]` (user optional, IPv6 as `[addr]`) into a validated `Host`.

    Raises `EdgetlError` (one line naming the value) on empty parts, shell metacharacters, whitespace,
    control characters, a leading `-`, a malformed host name or IP address, or a port outside 1..65535.
    """
    if not isinstance(spec, str):
        raise EdgetlError(f"remote host: expected a string like user@host[:port], got {type(spec).__name__}")
    shown = _show(spec)
    if not spec:
        raise EdgetlError("remote host: empty; expected user@host[:port]")
    if len(spec) > _MAX_SPEC:
        raise EdgetlError(f"remote host: {shown} is longer than {_MAX_SPEC} characters")
    if spec.startswith("-"):
        raise EdgetlError(f"remote host: {shown} starts with '-' (would be read as an ssh option)")
    if spec.count("@") > 1:
        raise EdgetlError(f"remote host: {shown} has more than one '@'; expected user@host[:port]")
    user: str | None = None
    rest = spec
    if "@" in spec:
        user, rest = spec.split("@", 1)
        if not user:
            raise EdgetlError(f"remote host: {shown} has an empty user name before '@'")
        _check_user(user, shown)
    addr, port_text = _split_port(rest, shown)
    _check_addr(addr, shown)
    port: int | None = None
    if port_text is not None:
        if not _PORT_RE.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
            raise EdgetlError(f"remote host: {shown} has port {_show(port_text)}; expected an integer in 1..65535")
        port = int(port_text)
    return Host(user=user, addr=addr, port=port)


def safe_remote_path(path: str) -> str:
    """Check a path on the remote machine and return it normalised (duplicate and trailing `/` removed); what
    it returns never starts with `-` (a relative path that would is kept as `./-...`).

    Allowed: letters, digits and `_ . / + = , @ % -`; a leading `~/` (the remote home). Refused: empty paths,
    `..` components, a leading `-` (it would be an option), anything a shell would interpret (space, quotes,
    `$ \\` ; & | < > * ? ( ) { } [ ] ! #` and newlines) and over-long paths.
    """
    if not isinstance(path, str):
        raise EdgetlError(f"remote path: expected a string, got {type(path).__name__}")
    shown = _show(path)
    if not path:
        raise EdgetlError("remote path: empty")
    if len(path) > _MAX_PATH:
        raise EdgetlError(f"remote path: {shown} is longer than {_MAX_PATH} characters")
    home = path == "~" or path.startswith("~/")
    body = path[1:] if home else path
    if body.startswith("-"):  # said early for the plain case; the result is checked again below
        raise EdgetlError(f"remote path: {shown} starts with '-' (would be read as an option)")
    if body and not _PATH_CHARS_RE.fullmatch(body):
        bad = sorted({c for c in body if not _PATH_CHARS_RE.fullmatch(c)})
        raise EdgetlError(
            f"remote path: {shown} contains {''.join(bad)!r}; allowed are letters, digits "
            f"and _ . / + = , @ % - (and a leading ~/)"
        )
    parts = body.split("/")
    if ".." in parts:
        raise EdgetlError(f"remote path: {shown} contains a '..' component")
    if home:
        rest = "/".join(p for p in parts if p)
        return f"~/{rest}" if rest else "~"
    norm = posixpath.normpath(body)  # no '..' left, so this only drops '.', '//' and trailing '/'
    if body.startswith("//"):
        norm = "/" + norm.lstrip("/")
    # validate what is returned, not only what was given: "./-x" normalises to "-x", an option
    return f"./{norm}" if norm.startswith("-") else norm


def quote_remote_word(word: str) -> str:
    """Quote one word of a remote command for a POSIX shell, keeping a leading `~/` expandable."""
    if not isinstance(word, str):
        raise EdgetlError(f"remote command: expected strings, got {type(word).__name__}")
    if "\x00" in word:
        raise EdgetlError(f"remote command: {_show(word)} contains a NUL byte")
    if word == "~":
        return "~"
    if word.startswith("~/"):
        rest = word[2:]
        return "~/" + shlex.quote(rest) if rest else "~/"
    return shlex.quote(word)


def remote_command(*words: str) -> str:
    """Join the words of a remote command into one string that the remote shell splits back into them."""
    if not words:
        raise EdgetlError("remote command: empty")
    return " ".join(quote_remote_word(w) for w in words)


# ---------------------------------------------------------------------------------------------------------
def _show(value: str, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _check_user(user: str, shown: str) -> None:
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise EdgetlError(
            f"remote host: {shown} has user name {_show(str(user))}; expected letters, digits, "
            f"'_', '.', '-' (starting with a letter or '_', at most 32 characters)"
        )


def _split_port(rest: str, shown: str) -> tuple[str, str | None]:
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise EdgetlError(f"remote host: {shown} opens '[' without a closing ']'")
        addr, tail = rest[1:close], rest[close + 1 :]
        if not addr:
            raise EdgetlError(f"remote host: {shown} has an empty address in '[]'")
        if ":" not in addr:
            raise EdgetlError(f"remote host: {shown}: brackets are only for IPv6 addresses")
        if not tail:
            return addr, None
        if not tail.startswith(":") or len(tail) == 1:
            raise EdgetlError(f"remote host: {shown} has {_show(tail)} after ']'; expected :port")
        return addr, tail[1:]
    if rest.count(":") > 1:
        raise EdgetlError(f"remote host: {shown}: write an IPv6 address in brackets, e.g. user@[fe80::1]:22")
    if ":" in rest:
        addr, port = rest.split(":", 1)
        if not port:
            raise EdgetlError(f"remote host: {shown} has an empty port after ':'")
        return addr, port
    return rest, None


def _check_addr(addr: str, shown: str) -> None:
    if not isinstance(addr, str) or not addr:
        raise EdgetlError(f"remote host: {shown} has an empty host name")
    if ":" in addr:  # IPv6, optionally with a zone (fe80::1%eth0)
        ip, _, zone = addr.partition("%")
        if "%" in addr and not _ZONE_RE.fullmatch(zone):
            raise EdgetlError(f"remote host: {shown} has a bad IPv6 zone {_show(zone)}")
        try:
            ipaddress.IPv6Address(ip)
        except ValueError:
            raise EdgetlError(f"remote host: {shown} has an invalid IPv6 address {_show(addr)}") from None
        return
    if len(addr) > 253:
        raise EdgetlError(f"remote host: {shown} has a host name longer than 253 characters")
    labels = addr.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise EdgetlError(
            f"remote host: {shown} has an invalid host name {_show(addr)}; expected letters, "
            f"digits, inner '-' and '.' between labels, or an IP address"
        )
    if all(label.isdigit() for label in labels):  # looks numeric: must be a real dotted-quad IPv4
        try:
            ipaddress.IPv4Address(addr)
        except ValueError:
            raise EdgetlError(f"remote host: {shown} has an invalid IPv4 address {_show(addr)}") from None


def _local_arg(path: str) -> str:
    """Local scp operands: `--` already ends options; a ':' would make scp read it as a remote spec."""
    text = str(path)
    if not text or "\x00" in text:
        raise EdgetlError(f"local path: {_show(text)} is empty or contains a NUL byte")
    head = text.split("/", 1)[0]
    if ":" in head:  # scp treats "host:path" as remote unless a '/' comes before the ':'
        text = "./" + text
    return text
