#!/usr/bin/env python3
"""dockerup: make a Docker host run the containers its spec files declare.

Usage:
  dockerup [options] [--format FORMAT] [--notify URL]...
  dockerup retry [options] [--format FORMAT] [--notify URL]... [NAME...]
  dockerup rollback [options] [--format FORMAT] [--notify URL]... NAME...
  dockerup status [options] [--format FORMAT]
  dockerup validate [options] [--user-data FILE]
  dockerup export --format FORMAT [options]
  dockerup schema [container | user-data | task-definition]
  dockerup -h | --help
  dockerup --version

Options:
  --config FILE       Configuration file [default /etc/dockerup/dockerup.conf;
                      a missing default file means built-in defaults].
  --cache DIR         Lock, last good user-data and image record
                      [default /var/cache/dockerup].
  --confdir DIR       Directory of container specs, one *.json file each
                      [default /etc/dockerup/containers.d].
  --remote URL        Docker daemon [default unix:///var/run/docker.sock].
  --interval SECONDS  Seconds between full syncs (pulls, user-data) with --server
                      [default 60].
  --aws               Also read containers from EC2 user-data.
  --no-aws            Do not read EC2 user-data [the default].
  --pull              Pull images to look for updates [the default].
  --no-pull           Only pull images that are missing locally.
  --exclusive         Own the host: remove every container not declared.
  --timeout SECONDS   Give up on any docker command after this long [default 300].
  --settle SECONDS    How long a replacement must stay up before the container
                      it replaces is stopped for good [default 2].
  --probation SECS    After an update, keep the replaced container this long
                      and roll back if the replacement fails [default 300; 0 off].
  --scope NAME        Own only the containers labelled with this scope [default
                      empty: those with no scope].
  --server            Keep running until SIGTERM: sync fully every interval seconds
                      and on SIGHUP, and within a second of a change of the spec
                      files or of the configuration file.
  --dry-run           Print the docker commands a run would execute, one per
                      line with the reason as a # comment; change nothing.
  --format FORMAT     status and --dry-run: text or json [default text];
                      export: ecs (an ECS task definition) or compose (a
                      compose file).
  --metrics FILE      After every run, write Prometheus metrics to this file,
                      atomically (node_exporter textfile) [default none].
  --notify URL        After a run in which something happened, POST a JSON
                      summary to this webhook; repeatable [default none].
  --show-secrets      Show env and log option values in logs and --dry-run
                      output (masked as ***).
  --user-data FILE    validate: also check this user-data document.
  --family NAME       export --format ecs: the task's family (default: this
                      host's name).
  -v, --verbose       Also log read-only docker commands, and tracebacks.
  -h, --help          Show this help.
  --version           Show the version.

Every option overrides the configuration file key of the same name.
`dockerup retry` forgets failed updates (of the NAMEs, or all) and runs: they are
tried again at once. `dockerup rollback` puts back the container an update on
probation replaced, or after probation recreates the container from the image its
last update replaced, and pins it there until its tag moves; then it runs.
`dockerup status` shows every declared and managed container, what is going on
with it (a failed update, probation, a pin, a newer image) and the last run, from
the engine and the cache alone: it pulls nothing and changes nothing.
`dockerup validate` checks the configuration file and every spec without
touching the Docker engine. `dockerup export` prints the declared containers as
an ECS task definition (for aws ecs register-task-definition --cli-input-json)
or a compose file; what does not translate is said on standard error, one line
each. `dockerup schema` prints the JSON Schema of a spec (or of a user-data
document, or of an ECS task definition), for editors and other validators.

Exit codes:
  0  converged (validate: everything is valid; status: all as declared)
  1  ran, but a spec was invalid or an action failed; the rest was applied
     (status: a container is not as declared, or a spec has a problem)
  2  could not run: bad usage, unreadable configuration, daemon unreachable
  3  another dockerup run holds the lock
"""

import copy
import enum
import hashlib
import json
import logging
import math
import os
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

__version__ = "0.1.0"

log = logging.getLogger("dockerup")

EXIT_OK, EXIT_PROBLEMS, EXIT_FATAL, EXIT_LOCKED = 0, 1, 2, 3


class DockerupError(Exception):
    """An expected failure, not a bug in dockerup: shown as one line, no traceback."""

    exit_code = EXIT_FATAL


class ConfigError(DockerupError):
    pass


class LockHeld(DockerupError):
    exit_code = EXIT_LOCKED


# ---- Python packages -----------------------------------------------------------
# Imported where first needed: a no-op run never imports jsonschema. The oldest releases
# that work (Debian 12 has sh 1.14.2, jsonschema 4.10.3, requests 2.28.1, docopt 0.6.2;
# sh 1.14.0 fails on Python 3.10+, jsonschema 3 has no draft 2020-12). docopt-ng, docopt's
# maintained successor, is the same `docopt` module.
OLDEST_RELEASES = {"sh": "1.14.2", "jsonschema": "4.0", "requests": "2.25", "docopt": "0.6.2"}


class MissingPackage(DockerupError):
    pass


def dependency(name, usable=None):
    """Import one of the packages dockerup needs; refuse a release too old to work,
    which `usable(module)` tells from what it lacks, rather than half-use it."""
    import importlib

    wanted = f"{name} {OLDEST_RELEASES[name]} or later"
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise MissingPackage(f"the Python package {wanted} is needed: {e}")
    if usable and not usable(module):
        found = getattr(module, "__version__", "of unknown version")
        raise MissingPackage(f"the Python package {wanted} is needed; this is {name} {found}")
    return module


# ============================================================================
# Configuration
# ============================================================================

DEFAULT_CONFIG_FILE = "/etc/dockerup/dockerup.conf"


def parse_bool(text):
    value = text.strip().lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def parse_seconds(text):
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise ValueError("expected a number of seconds above 0")
    return value


def parse_settle(text):
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError("expected a number of seconds, 0 or more")
    return value


def parse_scope(text):
    if text and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", text):
        raise ValueError("expected a name of letters, digits, '_', '.' and '-', starting with a letter or digit")
    return text


def parse_urls(text):
    """http(s) URLs separated by commas or spaces. A URL is never repeated in a
    message: a webhook's path is often its password."""
    from urllib.parse import urlsplit

    urls = tuple(word for word in re.split(r"[,\s]+", text) if word)
    for number, url in enumerate(urls, 1):
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            valid = False
        if not valid:
            raise ValueError("expected http:// or https:// URLs separated by commas or spaces; "
                             f"URL {number} is not one")
    return urls


def redact_url(url):
    """The scheme and host of a URL, for messages (the rest may be a secret)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/..."


OUTPUT_FORMATS = ("text", "json")


def normalize_remote(url):
    """The original documented default "unix://var/run/docker.sock" is read by the
    docker CLI as a path relative to the working directory: make it absolute."""
    url = url.strip()
    if url.startswith("/"):
        return "unix://" + url
    if url.startswith("unix://") and not url.startswith("unix:///"):
        return "unix:///" + url[len("unix://"):]
    if "://" not in url:
        raise ValueError("expected unix:///path/to/docker.sock or tcp://host:port")
    return url


# key -> (parser, default). Keys are what dockerup.conf accepts; each has an option.
CONFIG_KEYS = {
    "confdir": (str, "/etc/dockerup/containers.d"),
    "cache": (str, "/var/cache/dockerup"),
    "remote": (normalize_remote, "unix:///var/run/docker.sock"),
    "interval": (parse_seconds, 60.0),
    "aws": (parse_bool, False),
    "pull": (parse_bool, True),
    "exclusive": (parse_bool, False),
    "timeout": (parse_seconds, 300.0),
    # Seconds a replacement must keep running before its predecessor is stopped for good.
    "settle": (parse_settle, 2.0),
    # Seconds after an update during which a failing replacement is rolled back.
    "probation": (parse_settle, 300.0),
    # Which containers this instance owns: those labelled with its scope.
    "scope": (parse_scope, ""),
    # A Prometheus textfile written after every run; empty: none.
    "metrics": (str, ""),
    # Webhook URLs told about each run in which something happened.
    "notify": (parse_urls, ()),
}


@dataclass(frozen=True)
class Config:
    confdir: str
    cache: str
    remote: str
    interval: float
    aws: bool
    pull: bool
    exclusive: bool
    timeout: float
    settle: float
    probation: float
    scope: str
    metrics: str
    notify: tuple
    server: bool = False
    dry_run: bool = False
    format: str = "text"  # of `dockerup status` and --dry-run: text or json
    show_secrets: bool = False
    verbose: bool = False


def config_defaults():
    return {key: default for key, (_, default) in CONFIG_KEYS.items()}


def default_config(**overrides):
    """The built-in defaults, as if no file and no option were given."""
    return Config(**{**config_defaults(), **overrides})


def read_config_file(path):
    """Parse key=value lines; ';' and '#' start comment lines."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read configuration: {describe_os_error(e)}")
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ConfigError(f"{path}:{number}: expected key=value, got {line!r}")
        if key not in CONFIG_KEYS:
            known = ", ".join(CONFIG_KEYS)
            raise ConfigError(f"{path}:{number}: unknown key {key!r}{did_you_mean(key, CONFIG_KEYS)}; known keys: {known}")
        values[key] = parse_config_value(key, value, f"{path}:{number}")
    return values


# Keys whose values can hold a password (a webhook URL's path): never repeated in messages.
UNSHOWN_KEYS = ("notify",)


def parse_config_value(key, text, where):
    parser = CONFIG_KEYS[key][0]
    try:
        return parser(text)
    except ValueError as e:
        # float() says "could not convert string to float: 'x'": not for operators.
        reason = "expected a number" if "could not convert" in str(e) else str(e)
        raise ConfigError(f"{where}: {key}: {reason}" if key in UNSHOWN_KEYS else f"{where}: {key}={text!r}: {reason}")


def load_config(args):
    """Built-in defaults, then the configuration file, then command line options."""
    values = config_defaults()
    path = args.get("--config")
    if path:
        if not os.path.exists(path):
            raise ConfigError(f"{path}: configuration file not found")
        values.update(read_config_file(path))
    elif os.path.exists(DEFAULT_CONFIG_FILE):
        values.update(read_config_file(DEFAULT_CONFIG_FILE))
    for key in ("confdir", "cache", "remote", "interval", "timeout", "settle", "probation", "scope", "metrics"):
        if args.get(f"--{key}") is not None:
            values[key] = parse_config_value(key, args[f"--{key}"], f"--{key}")
    if args.get("--notify"):
        values["notify"] = tuple(url for text in args["--notify"]
                                 for url in parse_config_value("notify", text, "--notify"))
    output = "text" if args.get("export") else args.get("--format") or "text"  # export checks its own
    if output not in OUTPUT_FORMATS:
        raise ConfigError(f"--format: format={output!r}: expected text or json")
    if output == "json" and not (args.get("status") or args.get("--dry-run")):
        raise ConfigError("--format json is for `dockerup status` and --dry-run")
    for key in ("aws", "pull"):
        if args.get(f"--{key}"):
            values[key] = True
        if args.get(f"--no-{key}"):
            values[key] = False
    if args.get("--exclusive"):
        values["exclusive"] = True
    return Config(
        **values,
        server=bool(args.get("--server")),
        dry_run=bool(args.get("--dry-run")),
        show_secrets=bool(args.get("--show-secrets")),
        verbose=bool(args.get("--verbose")),
        format=output,
    )


@dataclass(frozen=True)
class ConfigSource:
    """Where a server's configuration comes from, to read it again when its file changes."""

    args: dict

    @property
    def path(self):
        return self.args.get("--config") or DEFAULT_CONFIG_FILE

    def load(self):
        return load_config(self.args)


def describe_os_error(error):
    if isinstance(error, UnicodeDecodeError):
        return f"not valid UTF-8 (byte 0x{error.object[error.start]:02x} at offset {error.start})"
    return error.strerror or str(error)


def did_you_mean(word, candidates):
    import difflib

    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


class NotRegularFile(OSError):
    pass


def open_regular_file(path, flags):
    """Open without blocking on a FIFO where a file is expected (a spec, a cache file)."""
    fd = os.open(path, flags | os.O_NONBLOCK)
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(path)
    return fd


# ---- The cache directory ---------------------------------------------------------
# Holds the lock and two conveniences: the last good user-data and the images
# dockerup has used. Nothing in it decides what runs, so losing it loses nothing
# that matters; failing to write it is a warning, not an error.
# It is trusted only when no one but the user running dockerup can have written
# to it: a user-data.json planted there would otherwise run as "the last good
# user-data". So the directory must be that user's and writable by no one else,
# and its files are never read or written through a symbolic link.


class UntrustedCache(DockerupError):
    pass


def trust_cache_dir(cache_dir, create=True):
    """Check the cache directory, creating it (0700) where missing unless `create`
    is false. Returns a descriptor of the directory, or None when it is missing
    and was not created. Raises UntrustedCache (exit 2) before anything is read."""
    missing, parent = [], os.path.abspath(cache_dir)
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    if missing:
        # Others may create entries in a sticky directory (/tmp) but not move ours:
        # mkdir is atomic, and what it made is checked below like any cache.
        problem = untrusted_owner(parent, allow_root=True) or untrusted_mode(parent, sticky_ok=True)
        if problem:
            raise UntrustedCache(f"{parent}: refusing to create the cache directory {cache_dir} in it: {problem}")
        if not create:
            return None
        for path in reversed(missing):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass  # made meanwhile: judged below like any existing directory
            except OSError as e:
                raise DockerupError(f"{cache_dir}: cannot create the cache directory: {describe_os_error(e)}")
    try:
        fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise DockerupError(f"{cache_dir}: cannot open the cache directory: {describe_os_error(e)}")
    problem = untrusted_owner(fd) or untrusted_mode(fd)
    if problem:
        os.close(fd)
        raise UntrustedCache(f"{cache_dir}: refusing the cache directory: {problem}")
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o700)
    except OSError as e:
        log.debug("%s: cannot restrict permissions: %s", cache_dir, describe_os_error(e))
    return fd


def untrusted_owner(path_or_fd, allow_root=False):
    """Why the directory's owner cannot be trusted, or "" when it can."""
    owner, me = os.stat(path_or_fd).st_uid, os.geteuid()
    if owner == me or (allow_root and owner == 0):
        return ""
    return f"it belongs to {describe_user(owner)}, not to {describe_user(me)} running dockerup"


def untrusted_mode(path_or_fd, sticky_ok=False):
    """Why the directory's permissions let others write to it, or "" when they do not."""
    import stat

    mode = os.stat(path_or_fd).st_mode
    writers = [who for who, bit in (("its group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    if not writers or (sticky_ok and mode & stat.S_ISVTX):
        return ""
    return f"{' and '.join(writers)} can write to it (mode {stat.S_IMODE(mode):04o})"


def describe_user(uid):
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def read_cache_bytes(cache_dir, name):
    path = os.path.join(cache_dir, name)
    try:
        with open(path, "rb", opener=lambda p, flags: open_regular_file(p, flags | os.O_NOFOLLOW)) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("%s: cannot read the cache: %s; ignored", path, describe_cache_error(e))
        return None


def write_file_atomically(path, data, mode=0o600, what="the cache"):
    """Through a temporary file beside `path`, renamed over it: a reader sees the old
    file or the new one, never half of one, and a power loss leaves no empty file.
    The temporary name is one no one can guess or plant a symbolic link at."""
    import secrets

    temporary = f"{path}.{secrets.token_hex(8)}.tmp"  # not *.prom: a textfile collector skips it
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as e:
        log.warning("%s: cannot write %s: %s", path, what, describe_os_error(e))
        return
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # whatever the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)  # replaces a symbolic link at `path`, never follows it
    except OSError as e:
        log.warning("%s: cannot write %s: %s", path, what, describe_os_error(e))
        try:
            os.unlink(temporary)
        except OSError:
            pass


def write_cache_bytes(cache_dir, name, data):
    """A cache file, readable by its owner only."""
    write_file_atomically(os.path.join(cache_dir, name), data)


def describe_cache_error(error):
    import errno

    if isinstance(error, NotRegularFile):
        return "not a regular file"
    if error.errno == errno.ELOOP:
        return "a symbolic link, which dockerup does not follow there"
    return describe_os_error(error)


def read_cache_list(cache_dir, name):
    """A JSON array of strings from the cache; anything else is as good as no
    file: the cache decides nothing, so a damaged file must never stop a run."""
    data = read_cache_bytes(cache_dir, name)
    try:
        value = json.loads(data) if data else []
    except ValueError:
        value = None
    if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
        log.warning("%s: not what dockerup writes there; ignored", os.path.join(cache_dir, name))
        return []
    return value


def remove_cache_file(cache_dir, name):
    try:
        os.unlink(os.path.join(cache_dir, name))
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("%s: cannot remove: %s", os.path.join(cache_dir, name), describe_os_error(e))


def host_lock(cache_dir):
    """An exclusive lock on the cache directory itself: no file to create, so it
    works on a read-only or full disk too. Returns the descriptor holding it."""
    import fcntl

    fd = trust_cache_dir(cache_dir)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(f"another dockerup run is converging this host (it holds the lock on {cache_dir})")
    return fd


# ============================================================================
# Loading and validation
# ============================================================================
# A spec is one validated container document. Everything after this section may
# assume its spec documents passed the schema and the checks below: no further
# type or presence checks are made on them.

# The JSON Schemas of a spec and of a user-data document. The module carries them, so
# that dockerup.py alone is a complete dockerup; `dockerup schema` prints them, and
# schema/*.json in the source tree are exactly that output (a test keeps them equal).
SCHEMA_TEXTS = {
    "container": r"""{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://dockerup.dev/schema/container.schema.json",
  "title": "dockerup container spec",
  "description": "One container that dockerup keeps running on a host: one JSON file in confdir, or one entry of the user-data \"containers\" array. Field names follow the AWS ECS container definition where ECS has one. Unknown fields are errors.",
  "type": "object",
  "additionalProperties": false,
  "required": ["image"],
  "properties": {
    "type": {
      "title": "Container type",
      "description": "Only \"docker\" is supported.",
      "const": "docker"
    },
    "name": {
      "title": "Container name",
      "description": "Unique per host; other specs refer to it in links, volumes[].from, network \"container:NAME\" and signal. Docker's rule: a letter or digit, then letters, digits, '_', '.' or '-'; at least two characters. Without a name, dockerup identifies the container by its image repository (see docs/specs.md).",
      "type": "string",
      "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$",
      "maxLength": 200
    },
    "image": {
      "title": "Image",
      "description": "Image reference, e.g. \"registry.example.com/app:1.4\": a lowercase repository (with a registry host first where it is not Docker Hub), a tag of letters, digits, '_', '.' and '-' (at most 128), and optionally a digest. Always give a tag: an image without one means \":latest\".",
      "type": "string",
      "pattern": "^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$",
      "maxLength": 512
    },
    "cpu": {
      "title": "CPU shares",
      "description": "Relative CPU weight (docker run --cpu-shares); 1024 is one full share. 0, as the ECS console writes it, means docker's default.",
      "type": "integer",
      "minimum": 0,
      "maximum": 262144
    },
    "memory": {
      "title": "Memory limit",
      "description": "Hard memory limit with a unit (docker run --memory): \"512m\", \"2g\", \"1.5g\", \"65536k\"; or a number of MiB, as ECS writes it (512). At least 6m, docker's minimum.",
      "anyOf": [{"$ref": "#/$defs/size"}, {"type": "integer", "minimum": 6}]
    },
    "memoryReservation": {
      "title": "Memory reservation",
      "description": "Soft memory limit with a unit (docker run --memory-reservation), or a number of MiB, as ECS writes it.",
      "anyOf": [{"$ref": "#/$defs/size"}, {"type": "integer", "minimum": 6}]
    },
    "entrypoint": {
      "title": "Entrypoint override",
      "description": "A string is split as a POSIX shell would split it; an array is the exact argv. The first word becomes --entrypoint, the rest go before the command's arguments.",
      "$ref": "#/$defs/argv"
    },
    "command": {
      "title": "Command override",
      "description": "Arguments after the image. A string is split as a POSIX shell would split it (no shell runs it); an array is the exact argv.",
      "$ref": "#/$defs/argv"
    },
    "privileged": {
      "title": "Privileged mode",
      "description": "Give the container all capabilities and devices (docker run --privileged).",
      "type": "boolean"
    },
    "network": {
      "title": "Network mode",
      "description": "\"bridge\" (docker's default), \"none\", \"host\", or \"container:NAME\" to share the network of another declared container.",
      "type": "string",
      "pattern": "^(bridge|none|host|container:[a-zA-Z0-9][a-zA-Z0-9_.-]+)$"
    },
    "volumes": {
      "title": "Volumes",
      "description": "Host directories (containerPath + hostPath, optional mode), named docker volumes (containerPath + volume, optional mode), anonymous volumes (containerPath only), or every volume of another declared container (from, optional mode).",
      "type": "array",
      "items": {"$ref": "#/$defs/volume"}
    },
    "portMappings": {
      "title": "Published ports",
      "description": "Container ports published on the host. Without hostPort docker picks a free host port.",
      "type": "array",
      "items": {"$ref": "#/$defs/portMapping"}
    },
    "env": {
      "title": "Environment",
      "description": "Environment variables. Numbers and booleans are passed as their JSON text. Values are masked as *** in dockerup's logs.",
      "type": "object",
      "propertyNames": {"pattern": "^[^=]+$", "minLength": 1},
      "additionalProperties": {"type": ["string", "number", "boolean"]}
    },
    "restart": {
      "title": "Restart policy",
      "description": "\"always\", \"unless-stopped\", \"on-failure\" or \"never\" (docker run --restart no).",
      "enum": ["always", "unless-stopped", "on-failure", "never"]
    },
    "update": {
      "title": "Update behaviour",
      "description": "How dockerup updates this container. Changing it never recreates the container.",
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "pull": {
          "description": "Pull the image to look for a newer one on every run (default true). An image missing locally is pulled anyway.",
          "type": "boolean"
        },
        "eager": {
          "description": "Start the replacement before stopping the old container (default false).",
          "type": "boolean"
        },
        "rolling": {
          "description": "Spread an image across a fleet: a new image for the tag is applied only after a delay of this host's own, the same for a host and an image every time and spread evenly over the window (seconds, default 3600, at most 7 days) across hosts. true for the default window, or {\"window\": SECONDS}. Spec changes and missing containers are not held back.",
          "anyOf": [
            {"type": "boolean"},
            {
              "type": "object",
              "additionalProperties": false,
              "properties": {
                "window": {"description": "Seconds over which the fleet takes a new image (default 3600).", "type": "number", "minimum": 0, "maximum": 604800}
              }
            }
          ]
        }
      }
    },
    "signal": {
      "title": "Signals after an update",
      "description": "Signals sent (docker kill --signal) to other containers after this one is created or replaced, e.g. to make a proxy reload.",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["container", "signal"],
        "properties": {
          "container": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"},
          "signal": {"type": "string", "pattern": "^(SIG)?[A-Z0-9+-]+$"}
        }
      }
    },
    "links": {
      "title": "Legacy links",
      "description": "Links to other declared containers: an array of \"name\" or \"name:alias\" strings (ECS), or an object {\"name\": \"alias\"} (the original dockerup).",
      "anyOf": [
        {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+(:[a-zA-Z0-9][a-zA-Z0-9_.-]*)?$"}},
        {"type": "object", "propertyNames": {"pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"}, "additionalProperties": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"}}
      ]
    },
    "dockerLabels": {
      "title": "Labels",
      "description": "Container labels. Keys starting with \"dockerup.\" are reserved.",
      "type": "object",
      "propertyNames": {"minLength": 1, "pattern": "^[^=]+$", "not": {"pattern": "^dockerup\\."}},
      "additionalProperties": {"type": "string"}
    },
    "hostname": {
      "description": "Container host name (docker run --hostname).",
      "type": "string",
      "pattern": "^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$",
      "maxLength": 253
    },
    "user": {
      "description": "User (and group) to run as: \"name\", \"uid\", \"uid:gid\" (docker run --user).",
      "type": "string",
      "pattern": "^[^:\\s]+(:[^:\\s]+)?$"
    },
    "workingDirectory": {
      "description": "Working directory inside the container (docker run --workdir).",
      "type": "string",
      "pattern": "^/"
    },
    "extraHosts": {
      "description": "Extra /etc/hosts entries (docker run --add-host).",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["hostname", "ipAddress"],
        "properties": {
          "hostname": {"type": "string", "pattern": "^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$"},
          "ipAddress": {"type": "string", "description": "An IPv4 or IPv6 address, or \"host-gateway\": the host's address on docker's default bridge (docker 20.10 or later)."}
        }
      }
    },
    "dnsServers": {
      "description": "DNS servers (docker run --dns).",
      "type": "array",
      "items": {"type": "string", "description": "An IPv4 or IPv6 address."}
    },
    "dnsSearchDomains": {
      "description": "DNS search domains (docker run --dns-search).",
      "type": "array",
      "items": {"type": "string", "pattern": "^[a-zA-Z0-9.-]+$"}
    },
    "logConfiguration": {
      "description": "Logging driver and its options (docker run --log-driver, --log-opt).",
      "type": "object",
      "additionalProperties": false,
      "required": ["logDriver"],
      "properties": {
        "logDriver": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.:/-]*$", "not": {"const": "awsfirelens"}},
        "options": {
          "type": "object",
          "propertyNames": {"minLength": 1, "pattern": "^[^=]+$"},
          "additionalProperties": {"type": "string"}
        },
        "secretOptions": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"}
      }
    },
    "healthCheck": {
      "description": "Health check run inside the container. An eager update waits for the new container to be healthy before stopping the old one.",
      "type": "object",
      "additionalProperties": false,
      "required": ["command"],
      "properties": {
        "command": {
          "description": "[\"CMD-SHELL\", \"shell command\"], [\"CMD\", \"arg\", ...] (run through /bin/sh, since docker run can only set a shell health command), [\"NONE\"] to disable the image's check, or a shell command string.",
          "anyOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "minItems": 1, "prefixItems": [{"enum": ["CMD", "CMD-SHELL", "NONE"]}], "items": {"type": "string"}}
          ]
        },
        "interval": {"description": "Seconds between checks (default 30); docker's minimum is 1ms.", "type": "number", "minimum": 0.001},
        "timeout": {"description": "Seconds before a check counts as failed (default 30); docker's minimum is 1ms.", "type": "number", "minimum": 0.001},
        "retries": {"description": "Consecutive failures that make the container unhealthy (default 3).", "type": "integer", "minimum": 1, "maximum": 100},
        "startPeriod": {"description": "Seconds after start during which failures do not count (default 0).", "type": "number", "minimum": 0}
      }
    },
    "stopTimeout": {
      "description": "Seconds docker waits after the stop signal before killing the container (docker run --stop-timeout).",
      "type": "integer",
      "minimum": 0,
      "maximum": 3600
    },
    "ulimits": {
      "description": "Resource limits (docker run --ulimit NAME=SOFT:HARD).",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "softLimit", "hardLimit"],
        "properties": {
          "name": {"enum": ["core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio", "rttime", "sigpending", "stack"]},
          "softLimit": {"type": "integer", "minimum": -1},
          "hardLimit": {"type": "integer", "minimum": -1}
        }
      }
    },
    "readonlyRootFilesystem": {
      "description": "Mount the container's root filesystem read-only (docker run --read-only).",
      "type": "boolean"
    },
    "environment": {
      "title": "Environment, as ECS writes it",
      "description": "The same setting as env, as a list of name/value pairs; give one of the two.",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["name"],
        "properties": {
          "name": {"type": "string", "minLength": 1, "pattern": "^[^=]+$"},
          "value": {"type": "string", "description": "Default empty."}
        }
      }
    },
    "entryPoint": {
      "title": "Entrypoint, as ECS writes it",
      "description": "The same setting as entrypoint, as an exact argv; give one of the two.",
      "type": "array",
      "minItems": 1,
      "items": {"type": "string"}
    },
    "mountPoints": {
      "title": "Mounts of task volumes",
      "description": "In an ECS task definition: the task's volumes (by name) to mount in this container. The same setting as volumes; give one of the two.",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["sourceVolume", "containerPath"],
        "properties": {
          "sourceVolume": {"type": "string", "minLength": 1},
          "containerPath": {"type": "string", "pattern": "^/[^:,]*$"},
          "readOnly": {"type": "boolean"}
        }
      }
    },
    "volumesFrom": {
      "title": "Volumes of other containers, as ECS writes them",
      "description": "The same setting as volumes[].from; give volumes or volumesFrom.",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["sourceContainer"],
        "properties": {
          "sourceContainer": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"},
          "readOnly": {"type": "boolean"}
        }
      }
    },
    "restartPolicy": {
      "title": "Restart policy, as ECS writes it",
      "description": "The same setting as restart: enabled is \"always\", with ignoredExitCodes [0] \"on-failure\", disabled \"never\"; give one of the two.",
      "type": "object",
      "additionalProperties": false,
      "required": ["enabled"],
      "properties": {
        "enabled": {"type": "boolean"},
        "ignoredExitCodes": {"type": "array", "items": {"type": "integer"}, "description": "Only [0] (docker's on-failure) can be honoured."},
        "restartAttemptPeriod": {"type": "integer", "minimum": 60, "maximum": 1800, "description": "No effect: docker backs off restarts by itself."}
      }
    },
    "disableNetworking": {
      "title": "No network, as ECS writes it",
      "description": "true is network \"none\"; give network or disableNetworking.",
      "type": "boolean"
    },
    "essential": {
      "title": "Essential to its task",
      "description": "In an ECS task definition (default true): when an essential container cannot be started, the task's containers that come after it are not started. false, without restart: a job, left stopped once it exits, as ECS leaves a container that is not essential.",
      "type": "boolean"
    },
    "dependsOn": {
      "title": "Containers to wait for",
      "description": "Declared containers this one starts after: START (started), HEALTHY (its healthCheck passes), COMPLETE (exited) or SUCCESS (exited 0). dockerup waits up to that container's startTimeout.",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["containerName", "condition"],
        "properties": {
          "containerName": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$"},
          "condition": {"enum": ["START", "COMPLETE", "SUCCESS", "HEALTHY"]}
        }
      }
    },
    "startTimeout": {
      "description": "Seconds the containers that depend on this one wait for its dependsOn condition (default 180, the ECS agent's).",
      "type": "integer",
      "minimum": 1,
      "maximum": 86400
    },
    "linuxParameters": {
      "title": "Linux settings",
      "description": "Capabilities (docker run --cap-add, --cap-drop), devices (--device), an init process (--init), the size of /dev/shm in MiB (--shm-size) and tmpfs mounts with their size in MiB (--tmpfs).",
      "type": "object",
      "additionalProperties": false,
      "properties": {
        "capabilities": {
          "type": "object",
          "additionalProperties": false,
          "properties": {
            "add": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"}},
            "drop": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"}}
          }
        },
        "devices": {
          "type": "array",
          "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["hostPath"],
            "properties": {
              "hostPath": {"type": "string", "pattern": "^/[^:,]*$"},
              "containerPath": {"type": "string", "pattern": "^/[^:,]*$", "description": "Default the hostPath."},
              "permissions": {"type": "array", "items": {"enum": ["read", "write", "mknod"]}, "description": "Default all three."}
            }
          }
        },
        "initProcessEnabled": {"type": "boolean"},
        "sharedMemorySize": {"type": "integer", "minimum": 1, "description": "MiB."},
        "tmpfs": {
          "type": "array",
          "items": {
            "type": "object",
            "additionalProperties": false,
            "required": ["containerPath", "size"],
            "properties": {
              "containerPath": {"type": "string", "pattern": "^/[^:,]*$"},
              "size": {"type": "integer", "minimum": 1, "description": "MiB."},
              "mountOptions": {"type": "array", "items": {"type": "string", "pattern": "^[a-z_]+(=[a-zA-Z0-9]+)?$"}}
            }
          }
        },
        "maxSwap": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
        "swappiness": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"}
      }
    },
    "systemControls": {
      "description": "Kernel parameters of the container's namespaces (docker run --sysctl NAMESPACE=VALUE).",
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["namespace", "value"],
        "properties": {
          "namespace": {"type": "string", "pattern": "^[a-zA-Z0-9_][a-zA-Z0-9_./-]*$"},
          "value": {"type": "string"}
        }
      }
    },
    "dockerSecurityOptions": {
      "description": "Security options (docker run --security-opt): \"no-new-privileges\", \"apparmor:PROFILE\", \"label:VALUE\", \"seccomp:unconfined\" (ECS's colon or docker's '=').",
      "type": "array",
      "items": {"type": "string", "pattern": "^(no-new-privileges((:|=)(true|false))?|(apparmor|label)(:|=)[^\\s]+|seccomp(:|=)unconfined)$"}
    },
    "pseudoTerminal": {
      "description": "Give the container a terminal (docker run --tty).",
      "type": "boolean"
    },
    "interactive": {
      "description": "Keep the container's standard input open (docker run --interactive).",
      "type": "boolean"
    },
    "pidMode": {
      "description": "\"host\" (docker run --pid host), or \"container:NAME\" to share the process namespace of another declared container.",
      "type": "string",
      "pattern": "^(host|container:[a-zA-Z0-9][a-zA-Z0-9_.-]+)$"
    },
    "ipcMode": {
      "description": "\"host\", \"none\", \"private\", \"shareable\", or \"container:NAME\" to share the IPC namespace of another declared container, which must be \"shareable\" (docker run --ipc).",
      "type": "string",
      "pattern": "^(host|none|private|shareable|container:[a-zA-Z0-9][a-zA-Z0-9_.-]+)$"
    },
    "versionConsistency": {
      "description": "ECS pins the image digest for a deployment; no effect on one host: dockerup follows the tag (update.pull).",
      "enum": ["enabled", "disabled"]
    },
    "secrets": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
    "environmentFiles": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
    "repositoryCredentials": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
    "firelensConfiguration": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
    "resourceRequirements": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"},
    "credentialSpecs": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"}
  },
  "$defs": {
    "port": {
      "description": "A TCP or UDP port, 1 to 65535, as a number or a string of digits.",
      "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": 65535},
        {"type": "string", "pattern": "^[0-9]{1,5}$"}
      ]
    },
    "portMapping": {
      "type": "object",
      "additionalProperties": false,
      "required": ["containerPort"],
      "properties": {
        "containerPort": {"$ref": "#/$defs/port"},
        "hostPort": {"$ref": "#/$defs/port"},
        "hostIp": {"type": "string", "description": "Host address to bind, e.g. \"127.0.0.1\" (default: all addresses)."},
        "protocol": {"enum": ["tcp", "udp"], "description": "Default tcp."},
        "name": {"type": "string", "description": "ECS Service Connect's name for the mapping; no effect on one host."},
        "appProtocol": {"enum": ["http", "http2", "grpc"], "description": "ECS Service Connect's protocol; no effect on one host."},
        "containerPortRange": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "#/$defs/nothing"}
      }
    },
    "volume": {
      "type": "object",
      "additionalProperties": false,
      "dependentRequired": {"hostPath": ["containerPath"], "volume": ["containerPath"]},
      "properties": {
        "containerPath": {"type": "string", "pattern": "^/[^:,]*$", "description": "Absolute path inside the container."},
        "hostPath": {"type": "string", "pattern": "^/[^:,]*$", "description": "Absolute path on the host; docker creates it if missing."},
        "mode": {"enum": ["ro", "rw"], "description": "Read-only or read-write (default rw); with hostPath, volume or from."},
        "from": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", "description": "Name of a declared container whose volumes to mount (docker run --volumes-from)."},
        "volume": {"type": "string", "pattern": "^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", "description": "A named docker volume to mount at containerPath; docker creates it if missing (docker run --volume NAME:PATH)."}
      }
    },
    "size": {
      "type": "string",
      "pattern": "^[0-9]+(\\.[0-9]+)? ?[kKmMgGtTpP]?[iI]?[bB]?$"
    },
    "argv": {
      "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "minItems": 1, "items": {"type": "string"}}
      ]
    },
    "nothing": {
      "description": "An empty value, as the ECS console writes a field it leaves unused.",
      "enum": [[], {}, "", null, false]
    }
  }
}
""",
    "user-data": r"""{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://dockerup.dev/schema/user-data.schema.json",
  "title": "dockerup EC2 user-data",
  "description": "The EC2 user-data document dockerup reads when aws=true: the containers to run besides those in confdir.",
  "type": "object",
  "additionalProperties": false,
  "required": ["containers"],
  "properties": {
    "containers": {
      "description": "Container specs, in the same format as the files in confdir.",
      "type": "array",
      "items": {"$ref": "container.schema.json"}
    }
  }
}
""",
    "task-definition": r"""{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "$id": "https://dockerup.dev/schema/task-definition.schema.json",
  "title": "ECS task definition, as dockerup runs it on one host",
  "description": "A file in confdir with containerDefinitions (or the output of aws ecs describe-task-definition, with the task definition under taskDefinition) declares each of its containers. Container definitions are container specs whose name is required. Fields that mean nothing on one host without AWS are refused unless empty; docs/ecs.md lists every ECS field.",
  "type": "object",
  "if": {"required": ["taskDefinition"]},
  "then": {
    "additionalProperties": false,
    "properties": {
      "taskDefinition": {"$ref": "#/$defs/taskDefinition"},
      "tags": {"description": "The task definition's AWS tags; no effect on one host."}
    }
  },
  "else": {"$ref": "#/$defs/taskDefinition"},
  "$defs": {
    "taskDefinition": {
      "type": "object",
      "additionalProperties": false,
      "required": ["containerDefinitions"],
      "properties": {
        "family": {
          "description": "The task's name; named docker volumes of task-scoped volumes are FAMILY_VOLUME. Default: the file's name without .json.",
          "type": "string",
          "pattern": "^[a-zA-Z0-9_-]{1,255}$"
        },
        "containerDefinitions": {
          "type": "array",
          "minItems": 1,
          "items": {"$ref": "container.schema.json", "required": ["name"]}
        },
        "volumes": {
          "description": "Volumes the containers mount by name (mountPoints): a host directory (host.sourcePath), or a named docker volume: FAMILY_NAME for an empty host or scope task, NAME for scope shared.",
          "type": "array",
          "items": {"$ref": "#/$defs/volume"}
        },
        "networkMode": {
          "description": "The network of every container of the task: bridge (docker's default), host or none.",
          "enum": ["bridge", "host", "none"]
        },
        "pidMode": {
          "description": "host: every container sees the host's processes; task: the containers share one process namespace (the first essential container's without dependsOn).",
          "enum": ["host", "task"]
        },
        "ipcMode": {
          "description": "host, none, or task: the containers share one IPC namespace (the first essential container's without dependsOn).",
          "enum": ["host", "task", "none"]
        },
        "executionRoleArn": {"description": "ECS's agent uses it to pull images and send logs; no effect on one host, where docker pulls with its own login.", "type": "string"},
        "requiresCompatibilities": {"description": "Where ECS may place the task; no effect on one host.", "type": "array"},
        "placementConstraints": {"description": "Which ECS instances may run the task; no effect on one host.", "type": "array"},
        "runtimePlatform": {"description": "The platform ECS places the task on; no effect on one host.", "type": "object"},
        "tags": {"description": "AWS tags; no effect on one host.", "type": "array"},
        "taskDefinitionArn": {"description": "ECS's record of the registration (describe-task-definition); no effect."},
        "revision": {"description": "ECS's record of the registration; no effect."},
        "status": {"description": "ECS's record of the registration; no effect."},
        "requiresAttributes": {"description": "ECS's record of the registration; no effect."},
        "compatibilities": {"description": "ECS's record of the registration; no effect."},
        "registeredAt": {"description": "ECS's record of the registration; no effect."},
        "registeredBy": {"description": "ECS's record of the registration; no effect."},
        "deregisteredAt": {"description": "ECS's record of the registration; no effect."},
        "deleteRequestedAt": {"description": "ECS's record of the registration; no effect."},
        "taskRoleArn": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "cpu": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "memory": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "proxyConfiguration": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "inferenceAccelerators": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "ephemeralStorage": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "enableFaultInjection": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"}
      }
    },
    "volume": {
      "type": "object",
      "additionalProperties": false,
      "required": ["name"],
      "properties": {
        "name": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,255}$"},
        "host": {
          "type": "object",
          "additionalProperties": false,
          "properties": {
            "sourcePath": {"type": "string", "pattern": "^/[^:,]*$", "description": "A host directory; without it, a docker volume scoped to the task."}
          }
        },
        "dockerVolumeConfiguration": {
          "type": "object",
          "additionalProperties": false,
          "properties": {
            "scope": {"enum": ["task", "shared"], "description": "task (default): the docker volume FAMILY_NAME; shared: the docker volume NAME, which other tasks may mount too. dockerup never removes either."},
            "autoprovision": {"type": "boolean", "description": "No effect: docker creates a missing volume."},
            "driver": {"const": "local", "description": "Only docker's own local driver: create other volumes yourself and mount them with scope shared."},
            "driverOpts": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
            "labels": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"}
          }
        },
        "efsVolumeConfiguration": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "s3filesVolumeConfiguration": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "fsxWindowsFileServerVolumeConfiguration": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"},
        "configuredAtLaunch": {"description": "ECS only; refused unless empty (docs/ecs.md says why).", "$ref": "container.schema.json#/$defs/nothing"}
      }
    }
  }
}
""",
}

SPEC_FILE_LIMIT = 1024 * 1024
SOURCE_CONFDIR, SOURCE_USER_DATA = "confdir", "user-data"
SIZE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([kKmMgGtTpP]?)[iI]?[bB]?$")
DOCKER_MIN_MEMORY = 6 * 1024 * 1024
ROLLING_WINDOW = 3600.0  # update.rolling's default window, in seconds


@dataclass(frozen=True)
class Problem:
    """One thing wrong, shown as one line: `where: path: message`."""

    where: str
    message: str
    path: str = ""

    def __str__(self):
        return one_line(": ".join(part for part in (self.where, self.path, self.message) if part))


# Control characters, and the characters Python's splitlines() and some terminals take
# for line breaks (NEL among the C1 controls, and the Unicode line and paragraph separators).
LINE_BREAKING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text):
    """Control characters (a newline in a file name) written as escapes: one
    problem, one line, whatever reads it line by line."""
    return LINE_BREAKING.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


@dataclass(frozen=True)
class Spec:
    doc: dict
    where: str  # the file, or "user-data"
    source: str  # SOURCE_CONFDIR or SOURCE_USER_DATA
    path: str = ""  # JSON path of the spec inside `where`, e.g. "containers[2]"
    identity: str = ""
    legacy_identity: str = ""  # what dockerup 0.1 called it (assign_identities)
    task: str = ""  # the family of the ECS task definition that declares it, if any
    task_essentials: tuple = ()  # names of that task's essential containers
    spelling: dict = field(default_factory=dict)  # path in `doc` -> path as written (normalize_container)

    @property
    def name(self):
        return self.doc.get("name")

    @property
    def image(self):
        return self.doc["image"]

    @property
    def label(self):
        """How logs refer to this spec."""
        return self.name or self.identity

    @property
    def eager(self):
        return self.doc.get("update", {}).get("eager", False)

    @property
    def one_shot(self):
        """A job rather than a service: once it exits 0, it is done."""
        return self.doc.get("restart") in ("never", "on-failure") or bool(self.stays_exited)

    @property
    def stays_exited(self):
        """Why an exited container of this spec is left stopped, or "". ECS leaves a
        container that is not essential stopped once it exits."""
        if self.doc.get("restart") == "never":
            return "restart is never"
        if self.doc.get("essential") is False and "restart" not in self.doc:
            return "it is not essential"
        return ""

    def may_pull(self, config):
        return config.pull and self.doc.get("update", {}).get("pull", True)

    @property
    def rolling_window(self):
        """Seconds over which a fleet takes a new image (update.rolling), or None."""
        rolling = self.doc.get("update", {}).get("rolling", False)
        if isinstance(rolling, dict):
            return float(rolling.get("window", ROLLING_WINDOW))
        return ROLLING_WINDOW if rolling else None

    @property
    def dependencies(self):
        """Names of the containers this one needs to exist first."""
        return list(dict.fromkeys(target for _, target in container_references(self.doc)))

    @property
    def attachments(self):
        """Names of the containers this one refers to by id (links, volumes, namespaces):
        when one is recreated, this container must follow it. dependsOn only orders."""
        return list(dict.fromkeys(target for path, target in container_references(self.doc)
                                  if not path.startswith("dependsOn")))

    @property
    def shared_namespaces(self):
        """Names of the containers whose network, process or IPC namespace this one joins:
        it must follow them when they are merely restarted, too."""
        return [self.doc[key][len("container:"):] for key in NAMESPACE_FIELDS
                if self.doc.get(key, "").startswith("container:")]

    def problem(self, path, message):
        return Problem(self.where, message, join_path(self.path, self.spelled(path)))

    def spelled(self, path):
        """A path in the spec as its file spells it: "env.A" of a spec written with
        environment is "environment[3]"."""
        for internal in sorted(self.spelling, key=len, reverse=True):
            if path == internal or path.startswith((internal + ".", internal + "[")):
                return self.spelling[internal] + path[len(internal):]
        return path


def join_path(*parts):
    text = ""
    for part in parts:
        if part in ("", None):
            continue
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part) or "." in part or "[" in part:
            text += ("." if text else "") + part
        else:
            text += json.dumps([part])
    return text


NAMESPACE_FIELDS = ("network", "pidMode", "ipcMode")  # "container:NAME" joins NAME's namespace


def container_references(doc):
    """(JSON path, container name) for every place a spec names another container:
    volumes[].from, links, network, pidMode or ipcMode container:NAME, dependsOn."""
    references = [(f"volumes[{i}].from", v["from"]) for i, v in enumerate(doc.get("volumes", [])) if "from" in v]
    links = doc.get("links") or ()
    if isinstance(links, dict):
        references += [(join_path("links", name), name) for name in links]
    else:
        references += [(f"links[{i}]", link.split(":", 1)[0]) for i, link in enumerate(links)]
    for key in NAMESPACE_FIELDS:
        if doc.get(key, "").startswith("container:"):
            references.append((key, doc[key][len("container:"):]))
    references += [(f"dependsOn[{i}].containerName", d["containerName"]) for i, d in enumerate(doc.get("dependsOn", ()))]
    return references


def reference_paths(doc, target):
    """The JSON paths in `doc` that name container `target`."""
    return [path for path, name in container_references(doc) if name == target]


_validators = {}


def schema_validator(kind):
    if kind not in _validators:
        jsonschema = dependency("jsonschema", lambda module: hasattr(module, "Draft202012Validator"))
        schemas = {k: json.loads(text) for k, text in SCHEMA_TEXTS.items()}
        # 6.0 is an integer to JSON Schema, but `docker run --cpu-shares 6.0` fails and
        # "6.0m" is no size: an integer field takes whole numbers as written.
        integers = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda checker, instance: isinstance(instance, int) and not isinstance(instance, bool))
        validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": whole_string_pattern},
                                                 type_checker=integers)
        _validators[kind] = validator(schemas[kind], **schema_references(validator, schemas, kind))
    return _validators[kind]


def schema_references(validator, schemas, kind):
    """How the validator finds the schemas' $refs to each other: a `referencing`
    registry since jsonschema 4.18, the RefResolver it replaced before (Debian 12)."""
    import inspect

    if "registry" in inspect.signature(validator).parameters:
        from referencing import Registry, Resource

        return {"registry": Registry().with_resources(
            (schema["$id"], Resource.from_contents(schema)) for schema in schemas.values())}
    import jsonschema

    store = {schema["$id"]: schema for schema in schemas.values()}
    return {"resolver": jsonschema.RefResolver.from_schema(schemas[kind], store=store)}


def whole_string_pattern(validator, pattern, instance, schema):
    """The schema's `$` ends the string (ECMA-262); Python's `$` also matches
    before a final newline, which let "web\\n" pass as a container name."""
    import jsonschema

    if validator.is_type(instance, "string"):
        regex = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
        if not re.search(regex, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def reject_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


class DuplicateKey(ValueError):
    pass


class UnusableNumber(ValueError):
    """A number Python's json module reads but nothing after it can use."""


def reject_constant(name):
    raise UnusableNumber(f"{name} is not a JSON value")


def finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise UnusableNumber(f"the number {short_text(text)} is too large")
    return value


def bounded_int(text):
    try:
        return int(text)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise UnusableNumber(f"a number of {len(text)} digits is too large") from None


def short_text(text, limit=20):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json_document(data, where, size=None):
    """Bytes to a JSON value, or a Problem saying precisely why not. `size` is
    the file's, when only the first SPEC_FILE_LIMIT + 1 bytes were read."""
    if len(data) > SPEC_FILE_LIMIT:
        return Problem(where, f"{max(size or 0, len(data))} bytes is too large; the limit is {SPEC_FILE_LIMIT} bytes")
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        return Problem(where, describe_os_error(e))
    if not text.strip():
        return Problem(where, "empty file; expected a JSON object")
    try:
        document = json.loads(text, object_pairs_hook=reject_duplicate_keys, parse_constant=reject_constant,
                              parse_float=finite_float, parse_int=bounded_int)
    except DuplicateKey as e:
        return Problem(where, f"duplicate key {str(e)!r}: JSON would silently keep only the last value")
    except json.JSONDecodeError as e:
        return Problem(where, f"line {e.lineno}, column {e.colno}: invalid JSON: {e.msg}")
    except UnusableNumber as e:
        return Problem(where, f"invalid JSON: {e}")
    except RecursionError:
        return Problem(where, "invalid JSON: nested too deeply")
    # Python parses ~990 levels, but every later step (the schema, messages,
    # hashing) recurses too and would fail a few frames further down.
    if json_depth(document) > MAX_JSON_DEPTH:
        return Problem(where, "invalid JSON: nested too deeply")
    if has_lone_surrogate(document):
        # JSON's \ud800 escapes name half a UTF-16 pair: no text, and no command line, can carry it.
        return Problem(where, "invalid JSON: a \\u escape names half of a UTF-16 surrogate pair, which is no character")
    return document


MAX_JSON_DEPTH = 64  # a spec needs 4


def json_depth(value):
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest


def has_lone_surrogate(value):
    pending = [value]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if re.search("[\ud800-\udfff]", value):
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def json_type_name(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def short_json(value, limit=60):
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


PATTERN_HINTS = {
    "name": "must start with a letter or digit, have at least 2 characters, and contain only letters, digits, '_', '.' and '-' (docker's rule)",
    "container": "must be a container name (letters, digits, '_', '.', '-')",
    "from": "must be a container name (letters, digits, '_', '.', '-')",
    "image": "is not a valid image reference such as \"registry.example.com/app:1.4\"",
    "network": "must be \"bridge\", \"none\", \"host\" or \"container:NAME\"",
    "memory": "must be a size with a unit such as \"512m\" or \"2g\"",
    "memoryReservation": "must be a size with a unit such as \"512m\" or \"2g\"",
    "containerPath": "must be an absolute path without ':' or ','",
    "hostPath": "must be an absolute path without ':' or ','",
    "workingDirectory": "must be an absolute path",
    "containerPort": "must be a port number from 1 to 65535",
    "hostPort": "must be a port number from 1 to 65535",
    "signal": "must be a signal name such as \"HUP\" or \"SIGUSR1\"",
    "links": "must be \"name\" or \"name:alias\"",
    "user": "must be \"user\", \"uid\" or \"uid:gid\"",
    "hostname": "must be a host name: letters, digits, '.' and '-', starting and ending with a letter or digit",
    "dnsSearchDomains": "must be a domain name: letters, digits, '.' and '-'",
    "logDriver": "must be a log driver name such as \"json-file\" or \"syslog\"",
    "links.*": "must be an alias: a letter or digit, then letters, digits, '_', '.' or '-'",
}

# Schema fields (as schema_field names them) whose values are never quoted in a message.
SECRET_FIELDS = ("env", "env.*", "options", "options.*")

TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
              "object": "an object", "array": "an array", "null": "null"}


def schema_field(error):
    """The schema property an error is about: "memory", or "links.*" for a value
    of the links object. Taken from the schema, not the document, whose keys
    (env names, link names) are the user's own."""
    parts, name = list(error.absolute_schema_path), ""
    for keyword, following in zip(parts, parts[1:]):
        if keyword == "properties":
            name = following
        elif keyword == "additionalProperties" and name:
            name += ".*"
    return name


def key_message(error):
    """Why a key of env, dockerLabels, links or log options is refused."""
    key = error.instance
    if key == "":
        return "an empty key is not allowed"
    if error.validator == "not":
        return f"key {short_json(key)} is reserved: keys starting with \"dockerup.\" are dockerup's own"
    if error.validator == "pattern" and error.validator_value == "^[^=]+$":
        return f"key {short_json(key)} must not contain '='"
    if schema_field(error) == "links":
        return f"key {short_json(key)} {PATTERN_HINTS['from']}"
    return f"key {short_json(key)} is not allowed"


def describe_value(value):
    return "null" if value is None else f"{json_type_name(value)} {short_json(value)}"


def schema_error_lines(error, path_prefix=""):
    """A jsonschema error as (path, message) pairs a person can act on."""
    path = join_path(path_prefix, *error.absolute_path)
    kind, instance, expected = error.validator, error.instance, error.validator_value
    if "propertyNames" in error.absolute_schema_path:
        return [(path, key_message(error))]
    if kind == "additionalProperties":
        known = list(error.schema.get("properties", {}))
        extras = [key for key in instance if key not in known]
        return [(join_path(path, key), f"unknown field{did_you_mean(key, known)}") for key in extras]
    if kind == "required":
        missing = [key for key in expected if key not in instance]
        return [(path, f"missing required field {key!r}") for key in missing]
    if kind == "type":
        words = [TYPE_WORDS[t] for t in ([expected] if isinstance(expected, str) else expected)]
        # env and log options hold secrets even when given the wrong type: say the type only.
        got = json_type_name(instance) if schema_field(error) in SECRET_FIELDS else describe_value(instance)
        return [(path, f"expected {' or '.join(words)}, got {got}")]
    if kind == "const":
        return [(path, f"{short_json(instance)} is not supported; the only value is {short_json(expected)}")]
    if kind == "enum":
        return [(path, f"{short_json(instance)} is not one of {', '.join(json.dumps(v) for v in expected)}")]
    if kind == "pattern":
        hint = PATTERN_HINTS.get(schema_field(error), f"does not match {expected}")
        return [(path, f"{short_json(instance)} {hint}")]
    if kind in ("minLength", "minItems", "minProperties") and expected == 1:
        return [(path, "must not be empty")]
    if kind in ("anyOf", "oneOf"):
        return branch_error_lines(error, path_prefix)
    if kind == "dependentRequired":
        missing = [(key, needs) for key, needs in expected.items() if key in instance for n in needs if n not in instance]
        return [(path, f"{key!r} needs {', '.join(repr(n) for n in needs)} too") for key, needs in missing]
    return [(path, error.message)]


def branch_error_lines(error, path_prefix):
    """For anyOf/oneOf, report the branch whose type matched the value, if any."""
    by_branch = {}
    for sub in error.context:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    matching = [subs for subs in by_branch.values()
                if not any(s.validator == "type" and not s.relative_path for s in subs)]
    if matching:
        return [line for sub in matching[0] for line in schema_error_lines(sub, path_prefix)]
    words = []
    for subs in by_branch.values():
        for s in subs:
            if s.validator == "type" and not s.relative_path:
                words.append(TYPE_WORDS.get(s.validator_value, str(s.validator_value)))
    path = join_path(path_prefix, *error.absolute_path)
    return [(path, f"expected {' or '.join(dict.fromkeys(words))}, got {describe_value(error.instance)}")]


VALIDATION_RULES = 2  # part of the memo's digest: raise it when validation changes beyond the schema


class SchemaMemo:
    """Digests of documents that passed the schema, kept in the cache directory, so
    that a run where no spec changed needs neither jsonschema nor its import time.
    The digest covers every schema (user-data refers to the container schema): a
    new schema validates everything again."""

    FILE = "validated.json"

    def __init__(self, cache_dir=None):
        self.cache_dir = cache_dir
        self.known = set(read_cache_list(cache_dir, self.FILE)) if cache_dir else set()
        self.passed = set()

    def problems(self, kind, document, where, path_prefix=""):
        digest = short_hash([VALIDATION_RULES, SCHEMA_TEXTS, kind, document], 32)
        if digest in self.known:
            self.passed.add(digest)
            return []
        problems = schema_problems(schema_validator(kind), document, where, path_prefix)
        if not problems:
            self.passed.add(digest)
        return problems

    def save(self):
        if self.cache_dir and self.passed != self.known:
            write_cache_bytes(self.cache_dir, self.FILE, json.dumps(sorted(self.passed)).encode())


def schema_problems(validator, document, where, path_prefix=""):
    problems = []
    kind = validator.schema["$id"].rsplit("/", 1)[-1].removesuffix(".schema.json")
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path])
    # A value of the wrong type is one problem, not also "less than the minimum".
    mistyped = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    errors = [e for e in errors if e.validator == "type" or tuple(e.absolute_path) not in mistyped]
    for error in errors:
        refused = refusal(kind, error)
        if refused:
            problems.append(Problem(where, refused, join_path(path_prefix, *error.absolute_path)))
            continue
        for path, message in schema_error_lines(error, path_prefix):
            problems.append(Problem(where, message, path))
    return list(dict.fromkeys(problems))


def parse_size(text):
    """docker's RAMInBytes: a number with an optional k/m/g/t/p unit (powers of 1024).
    In decimal arithmetic, so that a size of 400 digits is too large for docker, not
    infinite; sizes beyond any docker can hold come back as 2**64."""
    from decimal import Decimal

    match = SIZE_RE.match(text)
    if not match:
        return None
    number, unit = match.groups()
    return int(min(Decimal(number) * 1024 ** "bkmgtp".index(unit.lower() or "b"), Decimal(2 ** 64)))


def split_argv(value):
    """command/entrypoint: an array is the exact argv; a string splits like a POSIX shell."""
    if value is None:
        return []
    if isinstance(value, list):
        return list(value)
    return shlex.split(value)


def check_spec(spec):
    """Checks the schema cannot express. Returns Problems."""
    doc, problems = spec.doc, []

    def bad(path, message):
        problems.append(spec.problem(path, message))

    def walk(value, path, prefix=0):
        if isinstance(value, str) and "\0" in value:
            bad(path, "contains a NUL character, which no command line can carry")
        elif isinstance(value, str) and prefix + len(value.encode()) > MAX_ARGUMENT:
            bad(path, f"is {len(value.encode())} bytes long; a command line argument holds at most {MAX_ARGUMENT}")
        elif isinstance(value, dict):
            for key, item in value.items():
                if "\0" in key:
                    bad(path, "a key contains a NUL character")
                walk(item, join_path(path, key), len(key.encode()) + 1)  # env, labels: "KEY=value" is one argument
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, join_path(path, index))

    walk(doc, "")
    if problems:
        return problems
    for key in ("memory", "memoryReservation"):
        size = parse_size(doc[key]) if key in doc else None
        if size is not None and size < DOCKER_MIN_MEMORY:
            bad(key, f"{doc[key]!r} is below docker's minimum of 6m")
        elif size is not None and size > DOCKER_MAX_BYTES:
            bad(key, f"{doc[key]!r} is more than docker can represent")
    if not problems and "memory" in doc and "memoryReservation" in doc:
        if parse_size(doc["memoryReservation"]) > parse_size(doc["memory"]):
            bad("memoryReservation", f"{doc['memoryReservation']!r} is above memory {doc['memory']!r}; "
                                     "docker refuses a reservation above the limit")
    if doc.get("cpu") == 1:
        bad("cpu", "1 is below docker's minimum of 2; 0 (or no cpu) means docker's default")
    if len(doc.get("hostname", "")) > HOST_NAME_MAX:
        bad("hostname", f"is {len(doc['hostname'])} characters long; Linux allows at most {HOST_NAME_MAX}")
    for index, domain in enumerate(doc.get("dnsSearchDomains", [])):
        if not is_search_domain(domain):
            bad(f"dnsSearchDomains[{index}]", f"{domain!r} is not a domain docker accepts: labels of letters, digits "
                                              "and inner '-', separated by single dots, with at least one letter")
    for key in ("command", "entrypoint"):
        if isinstance(doc.get(key), str):
            try:
                if not shlex.split(doc[key]):
                    bad(key, "is blank")
            except ValueError as e:
                bad(key, f"cannot split {doc[key]!r} into arguments: {e}")
    check = doc.get("healthCheck", {}).get("command")
    if isinstance(check, list) and (len(check) > 1) != (check[0] != "NONE"):
        bad("healthCheck.command", "[\"NONE\"] takes nothing more" if check[0] == "NONE"
            else f"[{json.dumps(check[0])}] needs the command to run")
    own = doc.get("name")
    for index, volume in enumerate(doc.get("volumes", [])):
        if "from" in volume and ("containerPath" in volume or "hostPath" in volume):
            bad(f"volumes[{index}]", "'from' cannot be combined with containerPath or hostPath")
        elif "from" not in volume and "containerPath" not in volume:
            bad(f"volumes[{index}]", "needs containerPath (a volume) or from (another container's volumes)")
        elif "hostPath" in volume and "volume" in volume:
            bad(f"volumes[{index}]", "give hostPath (a host directory) or volume (a named volume), not both")
        elif "mode" in volume and not {"hostPath", "volume", "from"} & volume.keys():
            bad(f"volumes[{index}].mode", "applies only with hostPath or from; an anonymous volume is always rw")
        elif "containerPath" in volume and volume["containerPath"].rstrip("/") == "":
            bad(f"volumes[{index}].containerPath", "cannot be /: docker mounts nothing over the root")
    bound = []  # (address or None for every address, port, protocol) of each fixed host port
    for index, mapping in enumerate(doc.get("portMappings", [])):
        for key in ("containerPort", "hostPort"):
            if key in mapping and not 1 <= int(mapping[key]) <= 65535:
                bad(f"portMappings[{index}].{key}", f"{mapping[key]} is not a port number from 1 to 65535")
        if "hostIp" in mapping and not is_ip_address(mapping["hostIp"]):
            bad(f"portMappings[{index}].hostIp", f"{mapping['hostIp']!r} is not an IPv4 or IPv6 address")
        elif "hostPort" in mapping:
            binding = (bound_address(mapping.get("hostIp")), int(mapping["hostPort"]), mapping.get("protocol", "tcp"))
            if any(ports_clash(binding, other) for other in bound):
                where = f" on {mapping['hostIp']}" if binding[0] else ""
                bad(f"portMappings[{index}].hostPort", f"host port {binding[1]}/{binding[2]}{where} is mapped twice")
            bound.append(binding)
    for index, host in enumerate(doc.get("extraHosts", [])):
        if host["ipAddress"] != HOST_GATEWAY and not is_ip_address(host["ipAddress"]):
            bad(f"extraHosts[{index}].ipAddress", f"{host['ipAddress']!r} is not an IPv4 or IPv6 address, "
                                                  f"or {HOST_GATEWAY}")
    for index, server in enumerate(doc.get("dnsServers", [])):
        if not is_ip_address(server):
            bad(f"dnsServers[{index}]", f"{server!r} is not an IPv4 or IPv6 address")
    for index, limit in enumerate(doc.get("ulimits", [])):
        soft, hard = limit["softLimit"], limit["hardLimit"]
        if hard != -1 and (soft == -1 or soft > hard):
            bad(f"ulimits[{index}]", f"softLimit {soft} is above hardLimit {hard}")
    network = doc.get("network", "bridge")
    if network.startswith("container:") or network in ("host", "none"):
        conflicts = ["portMappings", "links"] if network != "none" else ["portMappings"]
        if network.startswith("container:"):
            conflicts += ["hostname", "dnsServers", "dnsSearchDomains", "extraHosts"]
        for key in conflicts:
            if doc.get(key):
                bad(key, f"cannot be used with network {network!r} (docker refuses or ignores it)")
    for path in reference_paths(doc, own) if own else ():
        bad(path, SELF_REFERENCE[re.match(r"[a-zA-Z]+", path)[0]])
    return problems


MAX_ARGUMENT = 128 * 1024 - 1  # Linux MAX_ARG_STRLEN, less the final NUL: exec fails with E2BIG beyond it
DOCKER_MAX_BYTES = 2 ** 63 - 1  # docker's sizes are int64
HOST_NAME_MAX = 64  # sethostname(2)
DOMAIN_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"


def is_search_domain(domain):
    """docker's ValidateDNSSearch: "." or a domain with a letter in it."""
    if domain == ".":
        return True
    return (bool(re.search("[a-zA-Z]", domain)) and len(domain.rstrip(".")) < 255
            and re.fullmatch(rf"{DOMAIN_LABEL}(?:\.{DOMAIN_LABEL})*\.?", domain) is not None)


SELF_REFERENCE = {"network": "a container cannot share its own network",
                  "links": "a container cannot link to itself",
                  "volumes": "a container cannot take volumes from itself",
                  "pidMode": "a container cannot share its own process namespace",
                  "ipcMode": "a container cannot share its own IPC namespace",
                  "dependsOn": "a container cannot wait for itself"}


HOST_GATEWAY = "host-gateway"  # docker's name for the host's address on its default bridge


def bound_address(text):
    """The address a published port binds, or None for every address."""
    import ipaddress

    if not text:
        return None
    address = ipaddress.ip_address(text)
    return None if address.is_unspecified else address


def ports_clash(one, other):
    """Whether two host ports (address, port, protocol) cannot both be bound: one
    port on two addresses can, but not on an address and on every address."""
    return one[1:] == other[1:] and (one[0] == other[0] or None in (one[0], other[0]))


def is_ip_address(text):
    import ipaddress

    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


# ---- ECS task definitions and ECS spellings ---------------------------------------
# dockerup's spec follows the ECS container definition. Where ECS spells a setting its
# own way (environment as name/value pairs, entryPoint, memory in MiB, mountPoints, ...),
# both spellings are accepted, and the ECS one is rewritten into dockerup's right after
# the schema: translation, the change hash and the planner see one form, so a container
# declared either way is the same container, with the same hash. A task definition in
# confdir declares each of its containers. ECS fields that mean nothing on one host
# without AWS are refused, each with a line saying why and what to use instead; the
# schema accepts them only empty ("environmentFiles": [], as the ECS console writes it).

DEFAULT_START_TIMEOUT = 180  # seconds: the ECS agent's ECS_CONTAINER_START_TIMEOUT on Linux

# ECS field -> why one host cannot honour it, and what to do instead. Keys are paths in a
# container definition ("linuxParameters.maxSwap"), "task." and a path in the task
# definition, or PATH=VALUE for one value of a field.
ECS_REFUSED = {
    "secrets": "ECS reads secrets from Secrets Manager or SSM Parameter Store as it starts the task, and dockerup "
               "does not: put the values in environment (or env)",
    "environmentFiles": "ECS downloads environment files from S3 as it starts the task, and dockerup does not: put the "
                        "variables in environment (or env)",
    "repositoryCredentials": "ECS reads registry credentials from Secrets Manager; dockerup pulls with the docker "
                             "client's own login: run docker login on the host",
    "firelensConfiguration": "FireLens needs the log router ECS adds to the task: send logs with logConfiguration "
                             "(the fluentd driver, for example)",
    "resourceRequirements": "ECS assigns GPUs and inference accelerators to tasks: give a device with "
                            "linuxParameters.devices",
    "credentialSpecs": "gMSA credential specs are for Windows containers, which dockerup does not run",
    "portMappings.containerPortRange": "dockerup maps single ports: give one portMappings entry per port",
    "linuxParameters.maxSwap": "dockerup does not set swap limits: docker gives a container as much swap as its "
                               "memory limit",
    "linuxParameters.swappiness": "dockerup does not set swappiness: the host's setting applies",
    "logConfiguration.secretOptions": "ECS reads these from Secrets Manager or SSM Parameter Store, and dockerup does "
                                      "not: put the values in logConfiguration.options",
    "logConfiguration.logDriver=awsfirelens": "FireLens needs the log router ECS adds to the task: use another log "
                                              "driver (fluentd, for example)",
    "dockerSecurityOptions=credentialspec": "gMSA credential specs are for Windows containers, which dockerup does "
                                            "not run",
    "restartPolicy.ignoredExitCodes": "docker restarts a container whatever its exit code, or (on-failure) unless "
                                      "it is 0: give [0] or nothing",
    "task.taskRoleArn": "the ECS agent hands the containers this role's credentials, and one host has no such agent: "
                        "give the host (its instance profile) the permissions, or the containers credentials in "
                        "environment",
    "task.cpu": "a limit for the whole task needs a control group for the task, which dockerup does not make: set "
                "cpu on each container",
    "task.memory": "a limit for the whole task needs a control group for the task, which dockerup does not make: set "
                   "memory on each container",
    "task.proxyConfiguration": "the App Mesh proxy is set up by ECS: run the proxy as a container of its own",
    "task.inferenceAccelerators": "Elastic Inference accelerators are attached by ECS",
    "task.ephemeralStorage": "the size of a Fargate task's disk; on one host, containers use the host's disk",
    "task.enableFaultInjection": "fault injection uses endpoints of the ECS agent, which one host does not run",
    "task.networkMode=awsvpc": "awsvpc gives each task a network interface of its own from the VPC, which only ECS "
                               "can attach: use bridge (and portMappings) or host",
    "task.volumes.efsVolumeConfiguration": "ECS mounts EFS itself: mount the file system on the host and give its "
                                           "directory as host.sourcePath",
    "task.volumes.s3filesVolumeConfiguration": "ECS mounts S3 Files itself: mount it on the host and give its "
                                               "directory as host.sourcePath",
    "task.volumes.fsxWindowsFileServerVolumeConfiguration": "FSx for Windows File Server volumes are for Windows "
                                                            "containers, which dockerup does not run",
    "task.volumes.configuredAtLaunch": "the volume would be given when ECS launches the task: name it here, with "
                                       "host.sourcePath or dockerVolumeConfiguration",
    "task.volumes.dockerVolumeConfiguration.driverOpts": "docker run cannot set a volume's driver options: create the "
                                                         "volume with docker volume create and mount it with scope "
                                                         "shared",
    "task.volumes.dockerVolumeConfiguration.labels": "docker run cannot label a volume: create the volume with docker "
                                                     "volume create and mount it with scope shared",
    "task.volumes.dockerVolumeConfiguration.driver": "docker run creates volumes with the local driver only: create "
                                                     "the volume with docker volume create and mount it with scope "
                                                     "shared",
}

# ECS fields accepted with no effect on one host: they steer ECS's own bookkeeping
# (placement, registration, Service Connect), not the container.
ECS_NO_EFFECT = {
    "versionConsistency": "ECS pins a deployment to the image digest the tag had; dockerup follows the tag, as "
                          "update.pull says",
    "portMappings.name": "names the mapping for ECS Service Connect",
    "portMappings.appProtocol": "the protocol ECS Service Connect proxies",
    "restartPolicy.restartAttemptPeriod": "docker backs off restarts by itself",
    "task.executionRoleArn": "the ECS agent's role to pull images and send logs; docker pulls with its own login and "
                             "log drivers use the host's credentials",
    "task.requiresCompatibilities": "where ECS may place the task",
    "task.placementConstraints": "which instances ECS may place the task on",
    "task.runtimePlatform": "the platform ECS places the task on",
    "task.tags": "AWS tags of the task definition",
    "task.volumes.dockerVolumeConfiguration.autoprovision": "docker creates a missing volume",
    **{f"task.{key}": "ECS's record of the registration (describe-task-definition)"
       for key in ("taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities", "registeredAt",
                   "registeredBy", "deregisteredAt", "deleteRequestedAt")},
}

# ECS field -> the dockerup field that says the same; a spec gives one of the two.
ECS_SPELLINGS = {
    "environment": "env",
    "entryPoint": "entrypoint",
    "mountPoints": "volumes",
    "volumesFrom": "volumes",
    "restartPolicy": "restart",
    "disableNetworking": "network",
}

# Top-level fields of a container spec that normalize_container rewrites or drops.
ECS_REWRITTEN = tuple(ECS_SPELLINGS) + tuple(key for key in (*ECS_REFUSED, *ECS_NO_EFFECT)
                                              if not key.startswith("task.") and "." not in key and "=" not in key)


def refusal(kind, error):
    """The ECS_REFUSED line for a schema error about a refused field or value, or None."""
    parts = [part for part in error.absolute_path if isinstance(part, str)]
    if kind == "user-data":
        parts = parts[1:]  # containers
    elif kind == "task-definition":
        parts = parts[1:] if parts[:1] == ["taskDefinition"] else parts
        parts = parts[1:] if parts[:1] == ["containerDefinitions"] else ["task"] + parts
    if error.validator not in ("enum", "const", "not", "pattern"):
        return None
    path, value = ".".join(parts), error.instance
    keys = [f"{path}={value}", f"{path}={re.split('[:=]', value)[0]}"] if isinstance(value, str) else []
    reason = next((ECS_REFUSED[key] for key in keys + [path] if key in ECS_REFUSED), None)
    return f"refused: {reason}" if reason else None


def container_fields_to_drop():
    """Dotted paths of the refused (so, empty) and no-effect fields of a container
    definition, which normalization leaves out."""
    return [key for key in (*ECS_REFUSED, *ECS_NO_EFFECT) if "=" not in key and not key.startswith("task.")]


def without(value, dotted):
    """`value` without the fields at the dotted path, looking into lists on the way."""
    head, _, rest = dotted.partition(".")
    if isinstance(value, list):
        return [without(item, dotted) for item in value]
    if not isinstance(value, dict) or head not in value:
        return value
    if not rest:
        return {key: item for key, item in value.items() if key != head}
    return {**value, head: without(value[head], rest)}


# A task definition's fields that set a field of every container: dockerup field -> task field.
TASK_SETTINGS = {"network": "networkMode", "pidMode": "pidMode", "ipcMode": "ipcMode"}


@dataclass(frozen=True)
class TaskContext:
    """What a task definition gives one of its containers."""

    family: str
    volumes: dict  # volume name -> the dockerup volume fields it mounts ({"hostPath": ...} or {"volume": ...})
    settings: dict  # dockerup field -> its value, from the task's TASK_SETTINGS


def normalize_container(doc, task, bad):
    """A schema-valid container spec in dockerup's spelling, and where the rewritten fields
    came from (path in the result -> path as written). `task` is the TaskContext of a
    container of a task definition, else None; `bad(path, message)` reports a problem."""
    for ecs, field_name in ECS_SPELLINGS.items():
        if ecs in doc and field_name in doc:
            bad(ecs, f"{field_name!r} says the same in dockerup's spelling; give one of the two")
    spelled = {key: value for key, value in doc.items() if key not in ECS_SPELLINGS}
    for dotted in container_fields_to_drop():
        spelled = without(spelled, dotted)
    origins = {}
    for key in ("memory", "memoryReservation"):
        if isinstance(spelled.get(key), int):
            spelled[key] = f"{spelled[key]}m"  # ECS gives MiB
    if spelled.get("cpu") == 0:
        del spelled["cpu"]  # the ECS console's "no reservation": docker's default
    if "environment" in doc:
        env, origins["env"] = {}, "environment"
        for index, pair in enumerate(doc["environment"]):
            earlier = origins.get(join_path("env", pair["name"]))
            if earlier:
                bad(f"environment[{index}].name", f"{short_json(pair['name'])} is set twice (also in {earlier})")
            env[pair["name"]] = pair.get("value", "")
            origins[join_path("env", pair["name"])] = f"environment[{index}]"
        spelled["env"] = env
    if "entryPoint" in doc:
        spelled["entrypoint"], origins["entrypoint"] = list(doc["entryPoint"]), "entryPoint"
    volumes = []
    for index, mount in enumerate(doc.get("mountPoints", ())):
        source = (task.volumes if task else {}).get(mount["sourceVolume"])
        if source is None:
            bad(f"mountPoints[{index}].sourceVolume", f"{short_json(mount['sourceVolume'])} names no volume of the "
                + ("task" if task else "task: a spec outside a task definition has none (use volumes)"))
            continue
        origins[f"volumes[{len(volumes)}]"] = f"mountPoints[{index}]"
        volumes.append({"containerPath": mount["containerPath"], **source,
                        **({"mode": "ro"} if mount.get("readOnly") else {})})
    for index, source in enumerate(doc.get("volumesFrom", ())):
        origins[f"volumes[{len(volumes)}]"] = f"volumesFrom[{index}]"
        origins[f"volumes[{len(volumes)}].from"] = f"volumesFrom[{index}].sourceContainer"
        volumes.append({"from": source["sourceContainer"], **({"mode": "ro"} if source.get("readOnly") else {})})
    if "mountPoints" in doc or "volumesFrom" in doc:
        spelled["volumes"] = volumes
        origins["volumes"] = "mountPoints" if "mountPoints" in doc else "volumesFrom"
    if "restartPolicy" in doc:
        policy, origins["restart"] = doc["restartPolicy"], "restartPolicy"
        ignored = policy.get("ignoredExitCodes") or []
        if ignored not in ([], [0]):
            bad("restartPolicy.ignoredExitCodes", f"refused: {ECS_REFUSED['restartPolicy.ignoredExitCodes']}")
        spelled["restart"] = "never" if not policy["enabled"] else "on-failure" if ignored else "always"
    if doc.get("disableNetworking"):
        spelled["network"], origins["network"] = "none", "disableNetworking"
    for key, value in (task.settings if task else {}).items():
        if key in spelled:
            written = origins.get(key, key)
            bad(written, f"the task's {TASK_SETTINGS[key]} sets this for every container; remove one of the two")
        spelled[key] = value
    return spelled, origins


def is_task_definition(document):
    return isinstance(document, dict) and ("containerDefinitions" in document or "taskDefinition" in document)


def task_family(body, where):
    """The task's family; without one, the file's name (web.json: web)."""
    if "family" in body:
        return body["family"]
    return re.sub(r"[^a-zA-Z0-9_-]", "-", os.path.basename(where).removesuffix(".json"))[:255] or "task"


def task_specs(document, where, memo):
    """The container specs an ECS task definition declares, in the order they are
    started (essential containers first, as far as dependsOn allows), and Problems. A
    task with any problem declares nothing: a part of a task is not what was written."""
    problems = memo.problems("task-definition", document, where)
    if problems:
        return [], problems
    prefix = "taskDefinition" if "taskDefinition" in document else ""
    body = document.get("taskDefinition", document)
    family = task_family(body, where)

    def bad(path, message):
        problems.append(Problem(where, message, join_path(prefix, path)))

    volumes = {}
    for index, volume in enumerate(body.get("volumes", ())):
        name, docker_volume = volume["name"], volume.get("dockerVolumeConfiguration")
        if name in volumes:
            bad(f"volumes[{index}].name", f"{short_json(name)} is also the name of an earlier volume")
        if docker_volume is not None and "host" in volume:
            bad(f"volumes[{index}]", "give host (a host directory) or dockerVolumeConfiguration (a docker volume), "
                                     "not both")
        if "sourcePath" in volume.get("host", {}):
            volumes[name] = {"hostPath": volume["host"]["sourcePath"]}
            continue
        shared = (docker_volume or {}).get("scope") == "shared"
        volumes[name] = {"volume": name if shared else f"{family}_{name}"}
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", volumes[name]["volume"]):
            bad(f"volumes[{index}].name", f"the docker volume {short_json(volumes[name]['volume'])} would need a name "
                                          "of at least two letters or digits, '_', '.' or '-', starting with a "
                                          "letter or digit")
    definitions = body["containerDefinitions"]
    essentials = tuple(d["name"] for d in definitions if d.get("essential", True))
    if not essentials:
        bad("containerDefinitions", "no container is essential; a task needs at least one (essential is true "
                                    "unless it says false)")
    # pidMode or ipcMode "task": the containers join the namespaces of one of them, which
    # must run first and keep running.
    leader = next((d["name"] for d in definitions if d.get("essential", True) and not d.get("dependsOn")), None)
    if leader is None and "task" in (body.get("pidMode"), body.get("ipcMode")):
        bad("pidMode" if body.get("pidMode") == "task" else "ipcMode",
            "task needs an essential container without dependsOn, whose namespace the others join")

    def settings_for(name):
        """The task's TASK_SETTINGS as the fields of one of its containers."""
        settings = {field_name: body[key] for field_name, key in TASK_SETTINGS.items() if key in body}
        for key, leaders_own in (("pidMode", None), ("ipcMode", "shareable")):
            if settings.get(key) == "task":
                settings[key] = leaders_own if name == leader else f"container:{leader}"
        return {key: value for key, value in settings.items() if value}

    specs = []
    for index, definition in enumerate(definitions):
        path = join_path(prefix, "containerDefinitions", index)
        found = []
        context = TaskContext(family, volumes, settings_for(definition["name"]))
        doc, spelling = normalize_container(definition, context,
                                            lambda sub, message: found.append(Problem(where, message,
                                                                                      join_path(path, sub))))
        spec = Spec(doc, where, SOURCE_CONFDIR, path, task=family, task_essentials=essentials, spelling=spelling)
        problems += found or check_spec(spec)
        specs.append(spec)
    if problems:
        return [], problems
    return sorted(specs, key=lambda spec: not spec.doc.get("essential", True)), []


def load_confdir(confdir):
    """Every *.json regular file in confdir, sorted by name.
    Returns (docs as (where, document) pairs, problems)."""
    try:
        names = sorted(os.listdir(confdir))
    except OSError as e:
        return [], [Problem(confdir, f"cannot read the container directory: {describe_os_error(e)}")]
    docs, problems = [], []
    for filename in names:
        if not filename.endswith(".json") or filename.startswith("."):
            continue
        path = os.path.join(confdir, filename)
        try:
            if os.path.isdir(path):
                continue
            with open(path, "rb", opener=open_regular_file) as f:
                data = f.read(SPEC_FILE_LIMIT + 1)
                size = os.fstat(f.fileno()).st_size
        except NotRegularFile:
            log.warning("%s: not a regular file; ignored", path)
            continue
        except OSError as e:
            problems.append(Problem(path, f"cannot read: {describe_os_error(e)}"))
            continue
        document = parse_json_document(data, path, size)
        if isinstance(document, Problem):
            problems.append(document)
        else:
            docs.append((path, document))
    return docs, problems


def validate_confdir_docs(docs, memo=None):
    """(where, document) pairs from confdir to Specs and Problems. A document with
    containerDefinitions is an ECS task definition, which declares each of its containers."""
    specs, problems = [], []
    memo = memo or SchemaMemo()
    for where, document in docs:
        if is_task_definition(document):
            found_specs, found = task_specs(document, where, memo)
            specs += found_specs
            problems += found
            continue
        if not isinstance(document, dict):
            problems.append(Problem(where, f"expected a JSON object describing one container, got {json_type_name(document)}"))
            continue
        spec, found = container_spec(document, where, SOURCE_CONFDIR, memo)
        problems += found
        if not found:
            specs.append(spec)
    return specs, problems


def container_spec(document, where, source, memo=None, path=""):
    """One container document to a Spec in dockerup's spelling, and Problems. Without
    a memo, the document has passed the schema already (as part of user-data)."""
    found = memo.problems("container", document, where, path) if memo else []
    if found:
        return None, found
    doc, spelling = normalize_container(document, None,
                                        lambda sub, message: found.append(Problem(where, message, join_path(path, sub))))
    spec = Spec(doc, where, source, path, spelling=spelling)
    return spec, found or check_spec(spec)


def validate_user_data(document, where="user-data", memo=None):
    """A parsed user-data document to Specs and Problems. Any problem makes the
    whole document unusable: a partly valid user-data is not what was deployed."""
    if not isinstance(document, dict):
        return [], [Problem(where, f"expected a JSON object {{\"containers\": [...]}}, got {json_type_name(document)}")]
    memo = memo or SchemaMemo()
    problems = memo.problems("user-data", document, where)
    if problems:
        return [], problems
    specs = []
    for index, doc in enumerate(document["containers"]):
        spec, found = container_spec(doc, where, SOURCE_USER_DATA, path=f"containers[{index}]")
        specs.append(spec)
        problems += found
    return ([] if problems else specs), problems


def image_repository(image):
    """Repository part of an image reference: no tag, no digest, no docker.io."""
    reference = normalize_image_ref(image)  # always "repo:tag" or "repo@digest"
    return reference.split("@")[0] if "@" in reference else reference.rsplit(":", 1)[0]


def normalize_image_ref(image):
    """The form `docker images` lists, as the docker CLI shortens Docker Hub names:
    no docker.io (or index.docker.io) registry, no library/ before an official
    image's name, and ":latest" made explicit."""
    name, at, digest = image.partition("@")
    registry, slash, rest = name.partition("/")
    if slash and registry in ("docker.io", "index.docker.io"):
        name = rest
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/"):]
    if at:
        return f"{name.rsplit(':', 1)[0] if ':' in name.rsplit('/', 1)[-1] else name}@{digest}"
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def check_declarations(specs, declared_names):
    """Checks across specs: duplicate names, references to undeclared containers,
    dependency cycles. Returns (valid specs in dependency order, problems)."""
    problems, dropped = [], set()
    by_name = {}
    for spec in specs:
        if spec.name in by_name:
            first = by_name[spec.name]
            problems.append(spec.problem("name", f"{spec.name!r} is also declared in {location(first)}"))
            problems.append(first.problem("name", f"{spec.name!r} is also declared in {location(spec)}"))
            dropped.update((id(spec), id(first)))
        elif spec.name:
            by_name[spec.name] = spec
    for spec in specs:
        for target in spec.dependencies:
            if target not in declared_names and target != spec.name:
                problems.append(spec.problem(reference_paths(spec.doc, target)[0],
                                             f"{target!r} names no declared container"))
                dropped.add(id(spec))
        for path, message in target_problems(spec, by_name):
            problems.append(spec.problem(path, message))
            dropped.add(id(spec))
    valid = [s for s in specs if id(s) not in dropped]
    ordered, cycles = dependency_order(valid)
    for cycle in cycles:
        for name in cycle[:-1]:
            problems.append(by_name[name].problem("", f"dependency cycle: {' -> '.join(cycle)}"))
    return ordered, problems


def target_problems(spec, by_name):
    """(path, message) for references whose target cannot do what this spec asks of it:
    a dependsOn condition it can never meet, an IPC namespace it does not share."""
    found = []
    for index, dependency in enumerate(spec.doc.get("dependsOn", ())):
        target, condition = by_name.get(dependency["containerName"]), dependency["condition"]
        if target is None or target is spec:
            continue
        check = target.doc.get("healthCheck")
        if condition == "HEALTHY" and (not check or check["command"] == ["NONE"]):
            found.append((f"dependsOn[{index}].condition", f"HEALTHY needs a healthCheck on {target.name!r}, "
                                                           "which has none"))
        elif condition in ("COMPLETE", "SUCCESS") and not target.one_shot:
            found.append((f"dependsOn[{index}].condition", f"{condition} waits for {target.name!r} to exit, but it "
                                                           "is kept running: make it a job (essential false, or "
                                                           "restart never or on-failure)"))
    ipc = spec.doc.get("ipcMode", "")
    target = by_name.get(ipc[len("container:"):]) if ipc.startswith("container:") else None
    if target is not None and target is not spec and target.doc.get("ipcMode") != "shareable":
        found.append(("ipcMode", f"{target.name!r} must have ipcMode \"shareable\" for others to join its IPC "
                                 "namespace"))
    return found


def location(spec):
    return f"{spec.where}: {spec.path}" if spec.path else spec.where


def dependency_order(specs):
    """Depth-first topological order, stable in declaration order.
    Returns (ordered specs without those in cycles, cycles as name lists)."""
    by_name = {s.name: s for s in specs if s.name}
    ordered, state, cycles, in_cycle = [], {}, [], set()

    def visit(spec, trail):
        key = id(spec)
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            start = trail.index(spec.name)
            cycles.append(trail[start:] + [spec.name])
            in_cycle.update(trail[start:])
            return
        state[key] = "visiting"
        for target in spec.dependencies:
            if target in by_name:
                visit(by_name[target], trail + [spec.name])
        state[key] = "done"
        ordered.append(spec)

    for spec in specs:
        visit(spec, [])
    return [s for s in ordered if s.name not in in_cycle], cycles


def assign_identities(specs):
    """A named spec is its name. An unnamed spec of confdir is its file, "file:web.json":
    whatever another file says, or whether it can be read at all, never changes which
    container a spec owns. The n-th unnamed spec of user-data is "user-data#n" (user-data
    is used whole or not at all). Each spec also gets the identity dockerup 0.1 gave it
    (its image repository, "image:REPOSITORY#n"), to adopt the containers it made."""
    repositories, unnamed_in_user_data, result = {}, 0, []
    for spec in specs:
        legacy = spec.name
        if spec.name:
            identity = spec.name
        else:
            repository = image_repository(spec.image)
            repositories[repository] = repositories.get(repository, 0) + 1
            count = repositories[repository]
            legacy = f"image:{repository}" + (f"#{count}" if count > 1 else "")
            if spec.source == SOURCE_USER_DATA:
                unnamed_in_user_data += 1
                identity = f"user-data#{unnamed_in_user_data}"
            else:
                identity = f"file:{os.path.basename(spec.where)}"
        result.append(replace(spec, identity=identity, legacy_identity=legacy))
    return result


# ---- EC2 user-data -----------------------------------------------------------
# A metadata outage must never look like "no containers": only an HTTP 404 means
# the instance has no user-data. Anything else keeps the last good document.

IMDS_ENDPOINT = "http://169.254.169.254"
IMDS_DEADLINE = 5.0  # seconds for the whole lookup, retries included
IMDS_ATTEMPTS = 3
# The token request's share of the deadline: a container beyond the instance's hop
# limit never gets its answer, and must have time left to ask with IMDSv1.
IMDS_TOKEN_WAIT = 1.0
USER_DATA_CACHE = "user-data.json"


class UserDataUnavailable(DockerupError):
    exit_code = EXIT_PROBLEMS


def metadata_endpoint():
    """The AWS SDKs' conventions; None when the lookup is disabled."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").strip().lower() == "true":
        return None
    return (os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_ENDPOINT).rstrip("/")


def fetch_user_data(endpoint, deadline=IMDS_DEADLINE):
    """The user-data bytes, or None when the instance has none (HTTP 404).
    IMDSv2 first; IMDSv1 only where the token request is refused with a 4xx or
    not answered within its share of the deadline, as the AWS SDKs do.
    The deadline bounds the whole lookup. requests' timeouts bound each socket
    read only, so a service answering a byte at a time would outlast them: the
    lookup runs in a worker thread that is abandoned at the deadline."""
    outcome = {}

    def work():
        try:
            outcome["data"] = fetch_user_data_with_retries(endpoint, deadline)
        except BaseException as e:  # re-raised in the caller's thread
            outcome["error"] = e

    worker = threading.Thread(target=work, name="imds", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise UserDataUnavailable(f"cannot fetch EC2 user-data from {endpoint} within {deadline:g} seconds: "
                                  "no answer in time")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["data"]


def imds_token_headers(session, endpoint, wait):
    """The IMDSv2 token header; none (IMDSv1) where the token request is refused
    with a 4xx or, once connected, not answered within `wait` seconds."""
    import requests

    try:
        token = session.put(f"{endpoint}/latest/api/token", timeout=wait,
                            headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    except requests.ReadTimeout:
        return {}
    if token.status_code == 200:
        return {"X-aws-ec2-metadata-token": token.text}
    if 400 <= token.status_code < 500:
        return {}
    raise requests.HTTPError(f"token request answered HTTP {token.status_code}")


def fetch_user_data_with_retries(endpoint, deadline):
    requests = dependency("requests")

    session = requests.Session()
    session.trust_env = False  # the metadata service is link-local: never through a proxy
    give_up = time.monotonic() + deadline
    problem = "no attempt made"
    for attempt in range(IMDS_ATTEMPTS):
        remaining = give_up - time.monotonic()
        if remaining <= 0.05:
            break
        try:
            headers = imds_token_headers(session, endpoint, min(IMDS_TOKEN_WAIT, deadline / 3, remaining))
            remaining = give_up - time.monotonic()
            response = session.get(f"{endpoint}/latest/user-data", headers=headers,
                                   timeout=(min(1.0, max(remaining, 0.05)), max(remaining, 0.05)))
            if response.status_code == 200:
                return response.content
            if response.status_code == 404:
                return None
            problem = f"HTTP {response.status_code} for /latest/user-data"
        except requests.Timeout:
            problem = "no answer in time"
        except requests.ConnectionError:
            problem = "cannot connect"
        except requests.RequestException as e:
            problem = str(e)
        if attempt + 1 < IMDS_ATTEMPTS:
            time.sleep(min(0.2 * (attempt + 1), max(give_up - time.monotonic(), 0)))
    raise UserDataUnavailable(f"cannot fetch EC2 user-data from {endpoint} within {deadline:g} seconds: {problem}")


def decompress_user_data(data, where):
    """User-data is capped at 16 KB, so people gzip it."""
    if data[:2] != b"\x1f\x8b":
        return data
    import zlib

    try:
        inflater = zlib.decompressobj(wbits=31)
        text = inflater.decompress(data, SPEC_FILE_LIMIT + 1)
    except zlib.error as e:
        return Problem(where, f"looks gzip-compressed but cannot be decompressed: {e}")
    if not inflater.eof and len(text) <= SPEC_FILE_LIMIT:
        return Problem(where, "looks gzip-compressed but is truncated: the compressed data ends early")
    return text


def parse_user_data(data, where="user-data", memo=None):
    """Bytes of a user-data document to (specs, problems, container documents)."""
    data = decompress_user_data(data, where)
    if isinstance(data, bytes) and data.lstrip()[:1] == b"#":
        kind = "a cloud-init config" if data.lstrip().startswith(b"#cloud-config") else "a script"
        data = Problem(where, f"is {kind}, not a dockerup document {{\"containers\": [...]}}")
    document = data if isinstance(data, Problem) else parse_json_document(data, where)
    if isinstance(document, Problem):
        return [], [document], []
    specs, problems = validate_user_data(document, where, memo)
    containers = document.get("containers") if isinstance(document, dict) else None
    return specs, problems, containers if isinstance(containers, list) else []


@dataclass
class UserData:
    specs: list
    problems: list
    documents: list  # the raw container documents, valid or not, for name checks
    complete: bool  # False when the current user-data could not be read or used


def read_user_data(cache_dir, endpoint, memo=None, remember=True):
    """The current user-data, or on any failure but a 404 the last good one.
    `remember` keeps the current one as the last good one (not in a dry run)."""
    try:
        data = fetch_user_data(endpoint)
    except UserDataUnavailable as e:
        return last_good_user_data(cache_dir, [Problem("user-data", str(e))], memo)
    if data is None:
        log.info("the instance has no user-data (HTTP 404): no containers from it")
        if remember:
            remove_cache_file(cache_dir, USER_DATA_CACHE)
        return UserData([], [], [], True)
    specs, problems, documents = parse_user_data(data, "user-data", memo)
    if problems:
        return last_good_user_data(cache_dir, problems, memo)
    text = decompress_user_data(data, "user-data")
    if remember and read_cache_bytes(cache_dir, USER_DATA_CACHE) != text:
        write_cache_bytes(cache_dir, USER_DATA_CACHE, text)
    return UserData(specs, [], documents, True)


def last_good_user_data(cache_dir, problems, memo=None):
    data = read_cache_bytes(cache_dir, USER_DATA_CACHE)
    if data is None:
        problems.append(Problem("user-data", "no earlier good user-data is cached: containers from user-data "
                                             "are left as they are"))
        return UserData([], problems, [], False)
    specs, cached_problems, documents = parse_user_data(data, "user-data", memo)
    if cached_problems:
        problems.append(Problem("user-data", "the cached earlier user-data is no longer valid; containers from "
                                             "user-data are left as they are"))
        return UserData([], problems, [], False)
    problems.append(Problem("user-data", f"keeping the last good user-data ({plural(len(specs), 'container')})"))
    return UserData(specs, problems, documents, False)


@dataclass
class Declared:
    """What should run, as far as the sources could tell."""

    specs: list  # valid Specs in dependency order
    problems: list
    # Sources that could not be fully read: their containers are never removed.
    incomplete_sources: set = field(default_factory=set)


def declared_names_of(documents):
    return {d["name"] for d in container_documents(documents) if isinstance(d, dict) and isinstance(d.get("name"), str)}


def container_documents(documents):
    """The container documents among spec and task definition documents, valid or not."""
    for document in documents:
        if is_task_definition(document):
            body = document.get("taskDefinition", document)
            definitions = body.get("containerDefinitions") if isinstance(body, dict) else None
            yield from definitions if isinstance(definitions, list) else ()
        else:
            yield document


def whole_tasks(specs, valid):
    """`valid` without the containers of tasks that lost one to a problem, and a Problem
    for each such task: a part of a task is not what was written."""
    kept = {id(spec) for spec in valid}
    broken = {}
    for spec in specs:
        if spec.task and id(spec) not in kept:
            broken.setdefault((spec.where, spec.task), []).append(spec.name)
    problems = [Problem(where, f"task {task} declares nothing: {', '.join(names)} cannot be converged")
                for (where, task), names in broken.items()]
    return [spec for spec in valid if (spec.where, spec.task) not in broken], problems


def load_declared(config, user_data=None, memo=None):
    """Read and check every source; `user_data` is a UserData, or None when aws is off."""
    incomplete = set()
    docs, problems = load_confdir(config.confdir)
    specs, invalid = validate_confdir_docs(docs, memo)
    problems += invalid
    if problems:
        incomplete.add(SOURCE_CONFDIR)
    names = declared_names_of(d for _, d in docs)
    if user_data is not None:
        problems += user_data.problems
        if not user_data.complete:
            incomplete.add(SOURCE_USER_DATA)
        specs += user_data.specs
        names |= declared_names_of(user_data.documents)
    ordered, cross = check_declarations(specs, names)
    problems += cross
    ordered, whole = whole_tasks(specs, ordered)
    problems += whole
    kept = {id(s) for s in ordered}
    incomplete |= {s.source for s in specs if id(s) not in kept}
    return Declared(assign_identities(ordered), problems, incomplete)


# ============================================================================
# Translation to docker run argv
# ============================================================================
# Every container dockerup creates carries these labels. They are the only record
# of ownership and of the spec a container was made from, so deleting the cache
# never makes dockerup forget a container.

LABEL_ID = "dockerup.id"  # the spec identity (see assign_identities)
LABEL_HASH = "dockerup.hash"  # "2:" and a hash of the spec's canonical form (change_hash)
LABEL_FIELDS = "dockerup.fields"  # per-field hashes, to say which fields changed
LABEL_SOURCE = "dockerup.source"  # confdir or user-data
LABEL_SCOPE = "dockerup.scope"  # the instance's scope; absent for the default, empty scope

RESTART_POLICIES = {"always": "always", "unless-stopped": "unless-stopped", "on-failure": "on-failure", "never": "no"}


def env_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def duration(seconds):
    """Go's duration syntax: decimal digits, never an exponent ("1e+06s" is refused)."""
    from decimal import Decimal

    return f"{Decimal(repr(seconds)).normalize():f}s"


def publish_argument(mapping):
    container = f"{int(mapping['containerPort'])}/{mapping.get('protocol', 'tcp')}"
    host = str(int(mapping["hostPort"])) if "hostPort" in mapping else ""
    address = mapping.get("hostIp", "")
    if ":" in address:
        address = f"[{address}]"
    if address:
        return f"{address}:{host}:{container}"
    return f"{host}:{container}" if host else container


def volume_flags(volume, carried=None):
    """`carried` maps the paths of anonymous volumes to the volume an earlier container
    of the spec had there."""
    read_only = ":ro" if volume.get("mode") == "ro" else ""
    if "from" in volume:
        return ["--volumes-from", volume["from"] + read_only]
    if "hostPath" in volume:
        return ["--volume", f"{volume['hostPath']}:{volume['containerPath']}{read_only}"]
    if "volume" in volume:
        return ["--volume", f"{volume['volume']}:{volume['containerPath']}{read_only}"]
    if carried and volume["containerPath"] in carried:
        return ["--volume", f"{carried[volume['containerPath']]}:{volume['containerPath']}"]
    return ["--volume", volume["containerPath"]]


def health_command(check):
    """The shell command of a healthCheck, or None for ["NONE"]. docker run can
    only set a shell health command, so the exec form is quoted for /bin/sh."""
    command = check["command"]
    if isinstance(command, str):
        return command
    if command[0] == "NONE":
        return None
    if command[0] == "CMD-SHELL":
        return " ".join(command[1:])
    return shlex.join(command[1:])


def health_flags(check):
    command = health_command(check)
    if command is None:
        return ["--no-healthcheck"]
    flags = ["--health-cmd", command]
    for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                      ("startPeriod", "--health-start-period")):
        if key in check:
            flags += [flag, duration(check[key])]
    if "retries" in check:
        flags += ["--health-retries", str(check["retries"])]
    return flags


def each(flag, values):
    return [item for value in values for item in (flag, value)]


# Variables the docker CLI itself reads: its daemon and configuration (DOCKER_*), proxies,
# the Go runtime's settings and certificates, and, where the CLI is linked against the C
# library (Debian's docker.io), the dynamic loader's (LD_*) and the resolver's. Given to
# the CLI as values they would change how it behaves, so these few stay on the command
# line, masked in logs.
CLI_ENVIRONMENT = frozenset({
    "HOME", "PATH", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
    "GODEBUG", "GOGC", "GOMAXPROCS", "GOMEMLIMIT", "GOTRACEBACK",
    "GLIBC_TUNABLES", "LOCALDOMAIN", "RES_OPTIONS", "HOSTALIASES"})
CLI_ENVIRONMENT_PREFIXES = ("DOCKER_", "LD_")


def read_by_docker_cli(key):
    return key in CLI_ENVIRONMENT or key.startswith(CLI_ENVIRONMENT_PREFIXES)


def env_flags(env):
    """`--env KEY`: docker takes the value from its own environment (run_environment),
    so no value is on a command line, where ps shows it to every user of the host."""
    return each("--env", [f"{key}={env_text(env[key])}" if read_by_docker_cli(key) else key for key in sorted(env)])


def device_argument(device):
    """HOST:CONTAINER[:PERMISSIONS] of docker run --device; ECS's permissions are words."""
    letters = "".join(letter for word, letter in (("read", "r"), ("write", "w"), ("mknod", "m"))
                      if word in device.get("permissions", ()))
    return ":".join(filter(None, (device["hostPath"], device.get("containerPath", device["hostPath"]), letters)))


def tmpfs_argument(mount):
    return f"{mount['containerPath']}:" + ",".join([f"size={mount['size']}m", *mount.get("mountOptions", ())])


def linux_flags(linux):
    capabilities = linux.get("capabilities", {})
    flags = each("--cap-add", capabilities.get("add", ())) + each("--cap-drop", capabilities.get("drop", ()))
    flags += each("--device", [device_argument(device) for device in linux.get("devices", ())])
    flags += ["--init"] if linux.get("initProcessEnabled") else []
    flags += ["--shm-size", f"{linux['sharedMemorySize']}m"] if "sharedMemorySize" in linux else []
    return flags + each("--tmpfs", [tmpfs_argument(mount) for mount in linux.get("tmpfs", ())])


def security_option(option):
    """ECS writes "apparmor:PROFILE"; docker's own separator is '='."""
    return re.sub(r"^([a-z-]+):", r"\1=", option)


# Spec field -> the docker run flags that give the container that setting, in the
# order they appear on the command line. The table in docs/specs.md mirrors this.
FIELD_FLAGS = {
    "hostname": lambda v: ["--hostname", v],
    "user": lambda v: ["--user", v],
    "workingDirectory": lambda v: ["--workdir", v],
    "privileged": lambda v: ["--privileged"] if v else [],
    "readonlyRootFilesystem": lambda v: ["--read-only"] if v else [],
    "cpu": lambda v: ["--cpu-shares", str(v)],
    "memory": lambda v: ["--memory", v],
    "memoryReservation": lambda v: ["--memory-reservation", v],
    "restart": lambda v: ["--restart", RESTART_POLICIES[v]],
    "stopTimeout": lambda v: ["--stop-timeout", str(v)],
    "network": lambda v: ["--network", v],
    "links": lambda v: each("--link", [f"{k}:{a}" for k, a in v.items()] if isinstance(v, dict) else v),
    "extraHosts": lambda v: each("--add-host", [f"{h['hostname']}:{h['ipAddress']}" for h in v]),
    "dnsServers": lambda v: each("--dns", v),
    "dnsSearchDomains": lambda v: each("--dns-search", v),
    "portMappings": lambda v: each("--publish", [publish_argument(m) for m in v]),
    "volumes": lambda v: [flag for volume in v for flag in volume_flags(volume)],
    "env": env_flags,
    "dockerLabels": lambda v: each("--label", [f"{k}={v[k]}" for k in sorted(v)]),
    "logConfiguration": lambda v: ["--log-driver", v["logDriver"]] + each(
        "--log-opt", [f"{k}={o}" for k, o in sorted(v.get("options", {}).items())]),
    "healthCheck": health_flags,
    "ulimits": lambda v: each("--ulimit", [f"{u['name']}={u['softLimit']}:{u['hardLimit']}" for u in v]),
    "entrypoint": lambda v: ["--entrypoint", split_argv(v)[0]],
    "linuxParameters": linux_flags,
    "systemControls": lambda v: each("--sysctl", [f"{c['namespace']}={c['value']}" for c in v]),
    "dockerSecurityOptions": lambda v: each("--security-opt", [security_option(o) for o in v]),
    "pseudoTerminal": lambda v: ["--tty"] if v else [],
    "interactive": lambda v: ["--interactive"] if v else [],
    "pidMode": lambda v: ["--pid", v],
    "ipcMode": lambda v: ["--ipc", v],
}


def field_flags(doc):
    """(field, flags) for every field of the spec that becomes docker run flags."""
    return [(key, translate(doc[key])) for key, translate in FIELD_FLAGS.items() if key in doc]


def container_arguments(doc):
    """The argv after the image: the entrypoint's extra words, then the command."""
    return split_argv(doc.get("entrypoint"))[1:] + split_argv(doc.get("command"))


def run_argv(spec, name=None, labels=None, image=None, carry=()):
    """The complete `docker run` argv (without the leading docker -H ...). `image` may
    replace the spec's (a pinned digest); `carry` mounts an earlier container's
    anonymous volumes, (name, path), at their paths."""
    name = name or spec.name
    argv = ["run", "--detach"] + (["--name", name] if name else [])
    for key, value in (labels or {}).items():
        argv += ["--label", f"{key}={value}"]
    carried = {path: volume for volume, path in carry}
    for key, flags in field_flags(spec.doc):
        if key == "volumes":
            flags = [flag for volume in spec.doc["volumes"] for flag in volume_flags(volume, carried)]
        argv += flags
    for path in sorted(carried.keys() - {v.get("containerPath") for v in spec.doc.get("volumes", [])}):
        argv += ["--volume", f"{carried[path]}:{path}"]
    return argv + [image or spec.image] + container_arguments(spec.doc)


def run_environment(spec):
    """The variables the `docker run` of run_argv needs in docker's environment."""
    env = spec.doc.get("env", {})
    return {key: env_text(value) for key, value in env.items() if not read_by_docker_cli(key)}


def short_hash(value, length):
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


# ---- The change hash -----------------------------------------------------------
# A container is recreated when the hash of its spec changes, so the hash is taken
# over a canonical form of the spec: what docker would do, not how it is written or
# how dockerup happens to translate it. Sizes are bytes, lists docker reads in any
# order are sorted, and values that add nothing ("privileged": false, "env": {}) are
# left out; reformatting, reordering and rewording never recreate a container, and
# neither does a new dockerup release that translates a field differently. The
# version prefix makes a deliberate change of the canonical form visible; a golden
# test pins the hashes of a corpus of specs.

HASH_VERSION = "2"


def canonical_links(links):
    pairs = links.items() if isinstance(links, dict) else (link.partition(":")[::2] for link in links)
    return sorted(f"{name}:{alias or name}" for name, alias in pairs)


def canonical_port(mapping):
    return [mapping.get("hostIp", ""), int(mapping.get("hostPort", 0)), int(mapping["containerPort"]),
            mapping.get("protocol", "tcp")]


def canonical_volume(volume):
    mode = volume.get("mode", "rw")
    if "from" in volume:
        return f"from {volume['from']}:{mode}"
    if "hostPath" in volume:
        return f"bind {volume['hostPath']}:{volume['containerPath']}:{mode}"
    if "volume" in volume:
        return f"named {volume['volume']}:{volume['containerPath']}:{mode}"
    return f"volume {volume['containerPath']}"


def canonical_linux(linux):
    capabilities = linux.get("capabilities", {})
    canonical = {"add": sorted(set(capabilities.get("add", ()))), "drop": sorted(set(capabilities.get("drop", ()))),
                 "devices": sorted(device_argument(device) for device in linux.get("devices", ())),
                 "init": bool(linux.get("initProcessEnabled")), "shm": linux.get("sharedMemorySize", 0) * 1024 ** 2,
                 "tmpfs": sorted(tmpfs_argument(mount) for mount in linux.get("tmpfs", ()))}
    return {key: value for key, value in canonical.items() if value}


def canonical_health(check):
    command = health_command(check)
    if command is None:
        return ["NONE"]
    return [command] + [float(check[key]) if key in check else None
                        for key in ("interval", "timeout", "retries", "startPeriod")]


# Spec field -> its canonical value in the change hash.
CANONICAL = {
    "name": str,
    "image": lambda v: normalize_image_ref(v),
    "hostname": str,
    "user": str,
    "workingDirectory": str,
    "privileged": bool,
    "readonlyRootFilesystem": bool,
    "stopTimeout": int,
    "network": str,
    "links": canonical_links,
    "extraHosts": lambda v: sorted(f"{h['hostname']}:{h['ipAddress']}" for h in v),
    "dnsServers": list,  # the resolver tries them in order
    "dnsSearchDomains": list,  # and these
    "portMappings": lambda v: sorted(canonical_port(m) for m in v),
    "volumes": lambda v: sorted(canonical_volume(volume) for volume in v),
    "env": lambda v: {key: env_text(value) for key, value in v.items()},
    "dockerLabels": dict,
    "logConfiguration": lambda v: [v["logDriver"], v.get("options", {})],
    "healthCheck": canonical_health,
    "ulimits": lambda v: sorted([u["name"], u["softLimit"], u["hardLimit"]] for u in v),
    "entrypoint": split_argv,
    "command": split_argv,
    "linuxParameters": canonical_linux,
    "systemControls": lambda v: sorted(f"{c['namespace']}={c['value']}" for c in v),
    "dockerSecurityOptions": lambda v: sorted(set(security_option(o) for o in v)),
    "pseudoTerminal": bool,
    "interactive": bool,
    "pidMode": str,
    "ipcMode": str,
}
# Fields docker can change on a running container (docker update): compared with what
# docker inspect reports instead of through the hash, and applied in place.
IN_PLACE_FIELDS = ("cpu", "memory", "memoryReservation", "restart")
# Fields that steer dockerup itself and never shape the container.
CONTROL_FIELDS = ("type", "update", "signal", "essential", "dependsOn", "startTimeout")


def canonical_spec(doc):
    canonical = {}
    for key, normalize in CANONICAL.items():
        value = normalize(doc[key]) if key in doc else None
        if value not in (None, False, "", [], {}):
            canonical[key] = value
    return canonical


def fingerprint(doc):
    """(hash, per-field hashes) of the spec's canonical form. The image *id* is left
    out on purpose: an updated image is detected on its own."""
    canonical = canonical_spec(doc)
    per_field = ",".join(f"{key}:{short_hash(value, 8)}" for key, value in canonical.items())
    return f"{HASH_VERSION}:{short_hash(canonical, 16)}", per_field


def legacy_fingerprint(doc):
    """The change hash of dockerup 0.1, taken over its translation of the spec to docker
    run flags. Kept only to recognise the containers that release made, so that an
    upgrade recreates none whose settings are unchanged; tests pin its values."""
    flags = {**FIELD_FLAGS, "env": lambda v: each("--env", [f"{k}={env_text(v[k])}" for k in sorted(v)])}
    parts = [("name", [doc.get("name", "")])] + [(key, flags[key](doc[key])) for key in flags if key in doc]
    parts = [(key, value) for key, value in parts if key == "name" or value]
    parts += [("image", [normalize_image_ref(doc["image"])]), ("command", container_arguments(doc))]
    named = dict(parts)
    if "entrypoint" in doc:
        named["entrypoint"] = ["--entrypoint", *split_argv(doc["entrypoint"])]
        named["command"] = split_argv(doc.get("command"))
    per_field = ",".join(f"{key}:{short_hash(value, 8)}" for key, value in named.items() if value not in ([], [""]))
    return short_hash(parts, 16), per_field


def is_legacy_hash(value):
    return ":" not in (value or "")


def changed_fields(old_fields, new_fields):
    def parse(text):
        return dict(item.split(":", 1) for item in (text or "").split(",") if ":" in item)

    old, new = parse(old_fields), parse(new_fields)
    return sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key))


def spec_labels(spec, scope=""):
    spec_hash, fields = fingerprint(spec.doc)
    labels = {LABEL_ID: spec.identity, LABEL_HASH: spec_hash, LABEL_FIELDS: fields, LABEL_SOURCE: spec.source}
    if scope:
        labels[LABEL_SCOPE] = scope
    return labels


# ---- Settings applied in place ----------------------------------------------------
# IN_PLACE_FIELDS as docker inspect reports them, and the docker update flags that set
# them. docker can raise, lower or set these, but cannot remove a limit it once set.

def resource_settings(doc):
    """The values docker inspect would show for the spec's IN_PLACE_FIELDS."""
    return {"cpu": doc.get("cpu", 0), "memory": parse_size(doc.get("memory", "0")) or 0,
            "memoryReservation": parse_size(doc.get("memoryReservation", "0")) or 0,
            "restart": RESTART_POLICIES.get(doc.get("restart"), "no")}


UPDATE_FLAGS = {
    "cpu": lambda v: ["--cpu-shares", str(v)],
    # docker run gives a container as much swap as memory; docker update must keep
    # the swap limit above the memory limit itself.
    "memory": lambda v: ["--memory", str(v), "--memory-swap", str(2 * v)],
    "memoryReservation": lambda v: ["--memory-reservation", str(v)],
    "restart": lambda v: ["--restart", v],
}


def display_command(argv, show_secrets=False, env=None):
    """The shell-quoted command line, with the values of env variables and log
    options masked unless asked otherwise. Shown, the variables given to docker
    in `env` become an `env NAME=VALUE ...` prefix: the line still runs as it ran."""
    if show_secrets:
        shown = ["env", *(f"{key}={value}" for key, value in sorted(env.items())), *argv] if env else list(argv)
    else:
        shown = masked_argv(argv)
    return " ".join(shell_quote(word) for word in shown)


def masked_argv(argv):
    """argv with the value of each NAME=VALUE after --env or --log-opt written ***."""
    shown = list(argv)
    for index in range(1, len(shown)):
        if shown[index - 1] in ("--env", "-e", "--log-opt") and "=" in shown[index]:
            shown[index] = shown[index].split("=", 1)[0] + "=***"
    return shown


def shell_quote(word):
    """shlex.quote, except that a word holding a control character (a newline)
    is written $'...' (bash, zsh, ksh), so that every command is one
    line of the log and of --dry-run output, and still pastes as it ran."""
    if not LINE_BREAKING.search(word):
        return shlex.quote(word)
    # Each such character as the bytes of its UTF-8 encoding, which $'...' gives back
    # exactly whatever the shell's locale.
    escaped = "".join("\\\\" if c == "\\" else "\\'" if c == "'" else
                      "".join(f"\\x{byte:02x}" for byte in c.encode()) if LINE_BREAKING.match(c) else c
                      for c in word)
    return f"$'{escaped}'"


# ---- Export: an ECS task definition, a compose file --------------------------------
# The declared containers in the two formats closest to dockerup's: ECS, for a fleet that
# outgrows a group of hosts, and compose, for one host without dockerup. What has no
# equivalent is left out and said, one line each: nothing is dropped silently. The export
# is the user's own configuration, so it holds env values (which no log ever shows).

MIB = 1024 ** 2
ECS_LOG_DRIVERS = ("json-file", "syslog", "journald", "gelf", "fluentd", "awslogs", "splunk")
ECS_HEALTH_RANGES = {"interval": (5, 300), "timeout": (2, 60), "retries": (1, 10), "startPeriod": (0, 300)}
ECS_RESTART = {"always": {"enabled": True}, "unless-stopped": {"enabled": True},
               "on-failure": {"enabled": True, "ignoredExitCodes": [0]}, "never": {"enabled": False}}
COMPOSE_CONDITIONS = {"START": "service_started", "HEALTHY": "service_healthy",
                      "SUCCESS": "service_completed_successfully", "COMPLETE": "service_completed_successfully"}


@dataclass
class Export:
    """An export under way: the names the containers get, what the task (or the compose
    file) collects from them, and the lines saying what does not translate."""

    family: str
    names: dict  # spec name -> the name in the export
    volumes: dict = field(default_factory=dict)  # ECS: key -> task volume; compose: docker volume name -> {}
    modes: dict = field(default_factory=dict)  # ECS: networkMode/pidMode/ipcMode -> {export name: value}
    notes: list = field(default_factory=list)

    def note(self, spec, path, message):
        self.notes.append(str(spec.problem(path, message)))


def export_names(specs, export_format, note):
    """spec name -> its name in the export. An unnamed spec is named after its file (or
    its place in user-data); ECS container names have no '.'."""
    names = {}
    for spec in specs:
        name = spec.name or re.sub(r"[^a-zA-Z0-9_.-]", "-", spec.identity.split(":", 1)[-1].removesuffix(".json"))
        if export_format == "ecs":
            name = name.replace(".", "-")
        if name != spec.name:
            note(spec, "name", f"{'no name' if not spec.name else 'ECS container names have no dot'}: exported as "
                               f"{name!r}")
        names[spec.name or spec.identity] = name
    return names


def whole_mib(size, spec, key, export):
    size_bytes = parse_size(size)
    mib = -(-size_bytes // MIB)
    if size_bytes % MIB:
        export.note(spec, key, f"ECS takes whole MiB: exported as {mib}")
    return mib


def ecs_volume_name(export, key, wanted, volume):
    """The task volume for `key`, added under a free name like `wanted` when new."""
    if key not in export.volumes:
        base = re.sub(r"[^a-zA-Z0-9_-]+", "_", wanted).strip("_")[:200] or "volume"
        taken = {v["name"] for v in export.volumes.values()}
        name = next(candidate for candidate in (base, *(f"{base}_{n}" for n in range(2, 1000)))
                    if candidate not in taken)
        export.volumes[key] = {"name": name, **volume}
    return export.volumes[key]["name"]


def ecs_volumes(volumes, spec, export):
    mounts, sources = [], []
    for index, volume in enumerate(volumes):
        read_only = volume.get("mode") == "ro"
        if "from" in volume:
            sources.append({"sourceContainer": export.names[volume["from"]], "readOnly": read_only})
            continue
        if "hostPath" in volume:
            name = ecs_volume_name(export, ("host", volume["hostPath"]), volume["hostPath"],
                                   {"host": {"sourcePath": volume["hostPath"]}})
        elif volume.get("volume", "").startswith(export.family + "_"):
            task_volume = volume["volume"][len(export.family) + 1:]
            name = ecs_volume_name(export, ("task", task_volume), task_volume,
                                   {"dockerVolumeConfiguration": {"scope": "task"}})
        elif "volume" in volume:
            name = ecs_volume_name(export, ("shared", volume["volume"]), volume["volume"],
                                   {"dockerVolumeConfiguration": {"scope": "shared", "autoprovision": True}})
            if name != volume["volume"]:
                export.note(spec, f"volumes[{index}].volume", f"ECS volume names have only letters, digits, '_' "
                                                              f"and '-': exported as {name!r}, a volume of that name")
        else:
            name = ecs_volume_name(export, ("anonymous", spec.label, volume["containerPath"]),
                                   f"{export.names[spec.name or spec.identity]}{volume['containerPath']}", {})
            export.note(spec, f"volumes[{index}]", f"an anonymous volume has no ECS form: exported as the task volume "
                                                   f"{name!r} (the docker volume {export.family}_{name} on one host)")
        mounts.append({"sourceVolume": name, "containerPath": volume["containerPath"], "readOnly": read_only})
    return {**({"mountPoints": mounts} if mounts else {}), **({"volumesFrom": sources} if sources else {})}


def ecs_mode(key, value, spec, export):
    """networkMode, pidMode and ipcMode belong to the task: collected, decided in ecs_task."""
    export.modes.setdefault(key, {})[export.names[spec.name or spec.identity]] = value
    return {}


def ecs_health(check, spec, export):
    command = check["command"]
    if command == ["NONE"]:
        export.note(spec, "healthCheck", "[\"NONE\"] has no ECS form: left out (the image's own check may apply)")
        return {}
    exported = {"command": ["CMD-SHELL", command] if isinstance(command, str) else list(command)}
    for key, (low, high) in ECS_HEALTH_RANGES.items():
        if key in check:
            exported[key] = min(max(round(check[key]), low), high)
            if exported[key] != check[key]:
                export.note(spec, f"healthCheck.{key}", f"ECS takes a whole number from {low} to {high}: "
                                                        f"exported as {exported[key]}")
    if "timeout" not in check:
        export.note(spec, "healthCheck.timeout", "not set: docker's default is 30 seconds, ECS's 5")
    return {"healthCheck": exported}


def ecs_logging(configuration, spec, export):
    if configuration["logDriver"] not in ECS_LOG_DRIVERS:
        export.note(spec, "logConfiguration.logDriver", f"ECS has no {configuration['logDriver']!r} log driver: "
                                                        "left out (ECS's default applies)")
        return {}
    return {"logConfiguration": dict(configuration)}


def ecs_ports(mappings, spec, export):
    exported = []
    for index, mapping in enumerate(mappings):
        exported.append({"containerPort": int(mapping["containerPort"]),
                         **({"hostPort": int(mapping["hostPort"])} if "hostPort" in mapping else {}),
                         "protocol": mapping.get("protocol", "tcp")})
        if "hostIp" in mapping:
            export.note(spec, f"portMappings[{index}].hostIp", "ECS publishes on every address of the host: "
                                                               "left out")
    return {"portMappings": exported}


def ecs_restart(policy, spec, export):
    if policy == "unless-stopped":
        export.note(spec, "restart", "ECS has no \"unless-stopped\": exported as always")
    return {"restartPolicy": ECS_RESTART[policy]}


def only_dockerup(what):
    def left_out(value, spec, export):
        export.note(spec, what, "dockerup's own setting, with no equivalent there: left out")
        return {}
    return left_out


def same_as(key):
    return lambda value, spec, export: {key: value}


def renamed_targets(dependencies, spec, export):
    return {"dependsOn": [{**d, "containerName": export.names[d["containerName"]]} for d in dependencies]}


def ecs_links(links, spec, export):
    """A renamed target keeps its old name as the alias, the host name the container knows."""
    pairs = links.items() if isinstance(links, dict) else (link.partition(":")[::2] for link in links)
    exported = []
    for name, alias in pairs:
        alias = alias or (name if export.names[name] != name else "")
        exported.append(f"{export.names[name]}:{alias}" if alias else name)
    return {"links": exported}


# dockerup field -> its ECS container definition fields.
ECS_EXPORT = {
    "type": lambda value, spec, export: {},
    "name": lambda value, spec, export: {},  # export_names
    "image": same_as("image"),
    "cpu": same_as("cpu"),
    "memory": lambda value, spec, export: {"memory": whole_mib(value, spec, "memory", export)},
    "memoryReservation": lambda value, spec, export: {
        "memoryReservation": whole_mib(value, spec, "memoryReservation", export)},
    "entrypoint": lambda value, spec, export: {"entryPoint": split_argv(value)},
    "command": lambda value, spec, export: {"command": split_argv(value)},
    "privileged": same_as("privileged"),
    "network": lambda value, spec, export: ecs_mode("networkMode", value, spec, export),
    "volumes": ecs_volumes,
    "portMappings": ecs_ports,
    "env": lambda value, spec, export: {"environment": [{"name": key, "value": env_text(value[key])}
                                                        for key in sorted(value)]},
    "restart": ecs_restart,
    "update": only_dockerup("update"),
    "signal": only_dockerup("signal"),
    "links": ecs_links,
    "dockerLabels": same_as("dockerLabels"),
    "hostname": same_as("hostname"),
    "user": same_as("user"),
    "workingDirectory": same_as("workingDirectory"),
    "extraHosts": same_as("extraHosts"),
    "dnsServers": same_as("dnsServers"),
    "dnsSearchDomains": same_as("dnsSearchDomains"),
    "logConfiguration": ecs_logging,
    "healthCheck": ecs_health,
    "stopTimeout": same_as("stopTimeout"),
    "ulimits": same_as("ulimits"),
    "readonlyRootFilesystem": same_as("readonlyRootFilesystem"),
    "essential": same_as("essential"),
    "dependsOn": renamed_targets,
    "startTimeout": same_as("startTimeout"),
    "linuxParameters": same_as("linuxParameters"),
    "systemControls": same_as("systemControls"),
    "dockerSecurityOptions": same_as("dockerSecurityOptions"),
    "pseudoTerminal": same_as("pseudoTerminal"),
    "interactive": same_as("interactive"),
    "pidMode": lambda value, spec, export: ecs_mode("pidMode", value, spec, export),
    "ipcMode": lambda value, spec, export: ecs_mode("ipcMode", value, spec, export),
}


def task_mode(key, values, names, note):
    """A task's networkMode, pidMode or ipcMode from its containers' values (export name
    -> value; absent = None), or None; a value the task cannot give is said and left out."""
    given = {name: values.get(name) for name in names}
    kinds = set(given.values())
    if key == "networkMode" and len(kinds) == 1 and kinds <= {"bridge", "host", "none"}:
        return kinds.pop()
    if key != "networkMode" and kinds == {"host"}:
        return "host"
    leaders = [name for name, value in given.items() if value in (None, "shareable")]
    if key != "networkMode" and len(leaders) == 1 and len(names) > 1 and all(
            value == f"container:{leaders[0]}" for name, value in given.items() if name != leaders[0]):
        return "task"
    for name, value in given.items():
        if value is not None and not (key == "networkMode" and value == "bridge"):
            why = ("ECS shares namespaces only task-wide" if value.startswith("container:")
                   else f"a task has one {key} for all its containers, and theirs differ")
            note(name, f"{value!r}: {why}: left out")
    return None


def export_ecs(specs, family):
    """The declared containers as one ECS task definition (RegisterTaskDefinition's
    input), and the lines saying what does not translate."""
    notes = []
    names = export_names(specs, "ecs", lambda spec, path, message: notes.append(str(spec.problem(path, message))))
    export = Export(family, names, notes=notes)
    definitions = []
    for spec in specs:
        definition = {"name": names[spec.name or spec.identity]}
        for key, value in spec.doc.items():
            definition.update(ECS_EXPORT[key](value, spec, export))
        if spec.one_shot and "essential" not in spec.doc:
            definition["essential"] = False  # ECS would stop the whole task when a job exits
        definitions.append(definition)
    by_export_name = {names[spec.name or spec.identity]: spec for spec in specs}
    task = {"family": family, "containerDefinitions": definitions}
    if export.volumes:
        task["volumes"] = list(export.volumes.values())
    for key, field_name in (("networkMode", "network"), ("pidMode", "pidMode"), ("ipcMode", "ipcMode")):
        mode = task_mode(key, export.modes.get(key, {}), list(by_export_name),
                         lambda name, message: export.note(by_export_name[name], field_name, message))
        if mode:
            task[key] = mode
    if not any(definition.get("essential", True) for definition in definitions):
        export.notes.append(f"{family}: no container is essential, and ECS needs one (a job has essential false)")
    return task, export.notes


def compose_volumes(volumes, spec, export):
    mounts, sources = [], []
    for volume in volumes:
        suffix = ":ro" if volume.get("mode") == "ro" else ""
        if "from" in volume:
            sources.append(export.names[volume["from"]] + suffix)
        elif "hostPath" in volume:
            mounts.append(f"{volume['hostPath']}:{volume['containerPath']}{suffix}")
        elif "volume" in volume:
            export.volumes[volume["volume"]] = {"name": volume["volume"]}
            mounts.append(f"{volume['volume']}:{volume['containerPath']}{suffix}")
        else:
            mounts.append(volume["containerPath"])
    return {**({"volumes": mounts} if mounts else {}), **({"volumes_from": sources} if sources else {})}


def compose_namespace(key):
    def translate(value, spec, export):
        if value.startswith("container:"):
            value = f"service:{export.names[value[len('container:'):]]}"
        return {key: value}
    return translate


def compose_health(check, spec, export):
    command = health_command(check)
    if command is None:
        return {"healthcheck": {"test": ["NONE"]}}
    # docker run gives every check as a shell command (health_flags): so does the export
    exported = {"test": ["CMD-SHELL", command]}
    for key, name in (("interval", "interval"), ("timeout", "timeout"), ("startPeriod", "start_period")):
        if key in check:
            exported[name] = duration(check[key])
    if "retries" in check:
        exported["retries"] = check["retries"]
    return {"healthcheck": exported}


def compose_linux(linux, spec, export):
    capabilities = linux.get("capabilities", {})
    exported = {"cap_add": capabilities.get("add"), "cap_drop": capabilities.get("drop"),
                "devices": [device_argument(device) for device in linux.get("devices", ())] or None,
                "init": linux.get("initProcessEnabled"),
                "shm_size": f"{linux['sharedMemorySize']}m" if "sharedMemorySize" in linux else None,
                "tmpfs": [tmpfs_argument(mount) for mount in linux.get("tmpfs", ())] or None}
    return {key: value for key, value in exported.items() if value is not None}


def compose_only_ecs(what, why):
    def left_out(value, spec, export):
        export.note(spec, what, why)
        return {}
    return left_out


def compose_links(links, spec, export):
    pairs = links.items() if isinstance(links, dict) else (link.partition(":")[::2] for link in links)
    return {"links": [f"{export.names[name]}:{alias or name}" for name, alias in pairs]}


def compose_arguments(doc):
    """entrypoint and command as dockerup gives them to docker run: the entrypoint's
    first word, then every other word as the command (so that docker inspect agrees)."""
    words = split_argv(doc.get("entrypoint"))
    exported = {"entrypoint": words[:1]} if words else {}
    arguments = container_arguments(doc)
    return {**exported, **({"command": arguments} if arguments else {})}


# dockerup field -> its compose service keys.
COMPOSE_EXPORT = {
    "type": lambda value, spec, export: {},
    "name": lambda value, spec, export: {},  # export_names
    "image": same_as("image"),
    "cpu": same_as("cpu_shares"),
    "memory": lambda value, spec, export: {"mem_limit": parse_size(value)},
    "memoryReservation": lambda value, spec, export: {"mem_reservation": parse_size(value)},
    "entrypoint": lambda value, spec, export: compose_arguments(spec.doc),
    "command": lambda value, spec, export: compose_arguments(spec.doc),
    "privileged": same_as("privileged"),
    "network": compose_namespace("network_mode"),
    "volumes": compose_volumes,
    "portMappings": lambda value, spec, export: {"ports": [publish_argument(mapping) for mapping in value]},
    "env": lambda value, spec, export: {"environment": {key: env_text(value[key]) for key in sorted(value)}},
    "restart": lambda value, spec, export: {"restart": RESTART_POLICIES[value]},
    "update": only_dockerup("update"),
    "signal": only_dockerup("signal"),
    "links": compose_links,
    "dockerLabels": same_as("labels"),
    "hostname": same_as("hostname"),
    "user": same_as("user"),
    "workingDirectory": same_as("working_dir"),
    "extraHosts": lambda value, spec, export: {"extra_hosts": [f"{h['hostname']}:{h['ipAddress']}" for h in value]},
    "dnsServers": same_as("dns"),
    "dnsSearchDomains": same_as("dns_search"),
    "logConfiguration": lambda value, spec, export: {"logging": {"driver": value["logDriver"],
                                                                 **({"options": value["options"]}
                                                                    if "options" in value else {})}},
    "healthCheck": compose_health,
    "stopTimeout": lambda value, spec, export: {"stop_grace_period": f"{value}s"},
    "ulimits": lambda value, spec, export: {"ulimits": {u["name"]: {"soft": u["softLimit"], "hard": u["hardLimit"]}
                                                        for u in value}},
    "readonlyRootFilesystem": same_as("read_only"),
    "essential": compose_only_ecs("essential", "compose has no tasks: left out"),
    "dependsOn": lambda value, spec, export: compose_depends_on(value, spec, export),
    "startTimeout": compose_only_ecs("startTimeout", "compose waits for dependencies without a time limit: "
                                                     "left out"),
    "linuxParameters": compose_linux,
    "systemControls": lambda value, spec, export: {"sysctls": {c["namespace"]: c["value"] for c in value}},
    "dockerSecurityOptions": lambda value, spec, export: {"security_opt": [security_option(o) for o in value]},
    "pseudoTerminal": same_as("tty"),
    "interactive": same_as("stdin_open"),
    "pidMode": compose_namespace("pid"),
    "ipcMode": compose_namespace("ipc"),
}


def compose_depends_on(dependencies, spec, export):
    for index, dependency in enumerate(dependencies):
        if dependency["condition"] == "COMPLETE":
            export.note(spec, f"dependsOn[{index}].condition", "compose waits only for a successful exit: "
                                                               "exported as service_completed_successfully")
    return {"depends_on": {export.names[d["containerName"]]: {"condition": COMPOSE_CONDITIONS[d["condition"]]}
                           for d in dependencies}}


def compose_escaped(value):
    """compose reads "$NAME" in any value as a variable of its own environment: "$$" is a "$"."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [compose_escaped(item) for item in value]
    if isinstance(value, dict):
        return {key: compose_escaped(item) for key, item in value.items()}
    return value


def export_compose(specs):
    """The declared containers as a compose file (the Compose Specification; JSON is
    YAML), and the lines saying what does not translate."""
    notes = []
    names = export_names(specs, "compose", lambda spec, path, message: notes.append(str(spec.problem(path, message))))
    export = Export("", names, notes=notes)
    services = {}
    for spec in specs:
        name = names[spec.name or spec.identity]
        service = {"container_name": name}
        for key, value in spec.doc.items():
            service.update(COMPOSE_EXPORT[key](value, spec, export))
        service.setdefault("network_mode", "bridge")  # docker run's default; compose would make a network
        services[name] = compose_escaped(service)
    return {"services": services, **({"volumes": export.volumes} if export.volumes else {})}, export.notes


# ============================================================================
# Reading docker state
# ============================================================================


class DockerError(DockerupError):
    """A docker command failed; `detail` is docker's own first line of complaint."""

    exit_code = EXIT_PROBLEMS

    def __init__(self, command, detail):
        self.command, self.detail = command, detail
        super().__init__(f"`{command}` failed: {detail}")


class DaemonUnreachable(DockerError):
    exit_code = EXIT_FATAL


class DockerTimeout(DockerError):
    pass


UNREACHABLE_MARKERS = ("Cannot connect to the Docker daemon", "Is the docker daemon running",
                       "error during connect", "dial unix", "connection refused")


# sh reads output line by line by default: slow for a large `docker inspect`.
OUTPUT_CHUNK = 64 * 1024
# sh's options for every docker call. sh 1.x passes an option it does not know on to
# the command as an argument (sh 2's `_return_cmd` became `---return-cmd`), so an sh
# that lacks one of these is refused. With _bg, both return the running command.
SH_OPTIONS = {"_bg": True, "_bg_exc": False, "_tty_out": False, "_ok_code": range(256), "_in": "",
              "_out_bufsize": OUTPUT_CHUNK, "_err_bufsize": OUTPUT_CHUNK}


def knows_sh_options(sh):
    return {option[1:] for option in SH_OPTIONS} <= set(sh.Command._call_args)


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_code: int


class Docker:
    """The docker CLI. Every call goes through _run(), which logs the exact,
    shell-quoted command line just before it runs."""

    def __init__(self, remote, timeout, dry_run=False, show_secrets=False, out=None, journal=None):
        import shutil

        dependency("sh", knows_sh_options)  # refused before anything runs, not at the first call
        self.prefix = ["docker", "-H", remote]
        self.executable = shutil.which("docker")
        self.timeout = timeout
        self.dry_run = dry_run
        self.show_secrets = show_secrets
        self.out = out or sys.stdout
        self.journal = journal  # a list: a dry run appends each command's argv (env values masked) instead
        self.calls = 0

    def read(self, *args, timeout=None, tolerate=None):
        """A command that changes nothing. It runs in --dry-run too; logged with -v.
        `tolerate(result)` may accept a non-zero exit."""
        return self._run(args, logging.DEBUG, timeout, tolerate).stdout

    def change(self, *args, reason, timeout=None, env=None):
        """A command that changes the host. In --dry-run it is printed on standard
        output with its reason as a comment, and not run. `env` adds variables to
        docker's environment (values of `--env NAME`, kept off the command line)."""
        line = display_command(self.prefix + list(args), self.show_secrets, env)
        if self.dry_run and self.journal is not None:
            self.journal.append(masked_argv(self.prefix + [str(a) for a in args]))
            return ""
        if self.dry_run:
            print(f"{line}  # {reason}", file=self.out, flush=True)
            return ""
        log.info("$ %s  # %s", line, reason)
        return self._run(args, None, timeout, env=env).stdout

    def _run(self, args, log_level, timeout=None, tolerate=None, env=None):
        sh = dependency("sh", knows_sh_options)
        argv = self.prefix + [str(a) for a in args]
        command = display_command(argv, self.show_secrets, env)
        if log_level is not None:
            log.log(log_level, "$ %s", command)
        if self.executable is None:
            raise DockerupError("docker: command not found on PATH")
        timeout = timeout or self.timeout
        self.calls += 1
        try:
            # sh's own _timeout polls, adding ~80 ms to every call: a timer kills instead.
            # Variables for `--env NAME` join docker's environment; without them it inherits dockerup's.
            environment = {"_env": {**os.environ, **env}} if env else {}
            process = sh.Command(self.executable)(*argv[1:], **SH_OPTIONS, **environment)
        except (OSError, sh.ForkException) as e:
            # sh reports a failed exec (E2BIG: an argument over 128 KiB) as ForkException.
            reason = describe_os_error(e) if isinstance(e, OSError) else first_line(str(e).split("OSError:")[-1])
            raise DockerError(command, f"cannot run {self.executable}: {reason}")
        timer = threading.Timer(timeout, kill_quietly, (process,))
        timer.start()
        try:
            process.wait()
        except sh.SignalException as e:
            if not timer.is_alive():
                raise DockerTimeout(command, f"no answer within {timeout:g} seconds (the timeout setting); gave up")
            raise DockerError(command, f"docker was killed by signal {-e.exit_code}")
        finally:
            timer.cancel()
        result = CommandResult(process.stdout.decode("utf-8", "replace"),
                               process.stderr.decode("utf-8", "replace"), process.exit_code)
        if result.exit_code == 0 or (tolerate and tolerate(result)):
            return result
        detail = first_line(result.stderr) or first_line(result.stdout) or f"exit code {result.exit_code}"
        if any(marker in result.stderr for marker in UNREACHABLE_MARKERS):
            raise DaemonUnreachable(command, detail)
        raise DockerError(command, detail)


def kill_quietly(process):
    try:
        process.kill()
    except OSError:  # it ended on its own meanwhile
        pass


def plural(count, noun):
    return f"{count} {noun}{'' if count == 1 else 's'}"


def first_line(text):
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


ALIVE_STATUSES = ("running", "restarting", "paused")


@dataclass(frozen=True)
class Mount:
    kind: str  # volume, bind or tmpfs
    name: str  # the volume's name; "" for a bind mount
    source: str
    destination: str


@dataclass(frozen=True, eq=False)
class Container:
    id: str
    name: str
    image_id: str
    status: str  # created, running, restarting, paused, exited, dead, removing
    health: str  # "" without a health check, else starting, healthy, unhealthy
    exit_code: int
    labels: dict
    host_ports: frozenset = frozenset()  # (port, protocol) published on the host
    created: float = 0.0  # seconds since the epoch
    started_at: float = 0.0  # 0 if it never started
    restart_count: int = 0  # restarts by the engine's restart policy
    network_mode: str = ""  # "container:<id>" when it shares another container's network
    volumes_from: tuple = ()
    mounts: tuple = ()  # Mounts
    declared_volumes: frozenset = frozenset()  # Config.Volumes: the image's VOLUMEs and anonymous -v PATH
    resources: dict = field(default_factory=lambda: resource_settings({}))  # IN_PLACE_FIELDS, as docker has them
    image: str = ""  # the image reference it was created from (Config.Image)

    @property
    def alive(self):
        """Running as far as dockerup is concerned: docker itself is handling a
        restarting or paused container, so it is neither started nor replaced."""
        return self.status in ALIVE_STATUSES

    @property
    def identity(self):
        return self.labels.get(LABEL_ID)

    @property
    def managed(self):
        return self.identity is not None

    @property
    def scope(self):
        return self.labels.get(LABEL_SCOPE, "")

    @property
    def short(self):
        return f"{self.name} ({self.id[:12]})"


def parse_docker_time(text):
    """docker's RFC 3339 timestamps with nanoseconds, as seconds since the epoch;
    0 for Go's zero time, which docker gives a container that never started."""
    import datetime

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text or "")
    if not match or match.group(1).startswith("0001-"):
        return 0.0
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    moment = datetime.datetime.fromisoformat(match.group(1) + zone)
    return moment.timestamp() + float("0" + (match.group(2) or ""))


def parse_containers(inspect_json):
    containers = []
    for item in json.loads(inspect_json or "[]"):
        state, config = item.get("State") or {}, item.get("Config") or {}
        host_config = item.get("HostConfig") or {}
        ports = set()
        for key, bindings in (host_config.get("PortBindings") or {}).items():
            port, _, protocol = key.partition("/")
            for binding in bindings or ():
                if binding.get("HostPort"):
                    ports.add((int(binding["HostPort"]), protocol or "tcp"))
        mounts = tuple(Mount(m.get("Type", ""), m.get("Name", ""), m.get("Source", ""), m.get("Destination", ""))
                       for m in item.get("Mounts") or ())
        resources = {"cpu": host_config.get("CpuShares") or 0, "memory": host_config.get("Memory") or 0,
                     "memoryReservation": host_config.get("MemoryReservation") or 0,
                     "restart": (host_config.get("RestartPolicy") or {}).get("Name") or "no"}
        containers.append(Container(
            id=item["Id"], name=item["Name"].lstrip("/"), image_id=item["Image"],
            status=state.get("Status", ""), health=(state.get("Health") or {}).get("Status", ""),
            exit_code=state.get("ExitCode", 0), labels=config.get("Labels") or {}, host_ports=frozenset(ports),
            created=parse_docker_time(item.get("Created")), started_at=parse_docker_time(state.get("StartedAt")),
            restart_count=item.get("RestartCount") or 0, network_mode=host_config.get("NetworkMode") or "",
            volumes_from=tuple(host_config.get("VolumesFrom") or ()), mounts=mounts,
            declared_volumes=frozenset(config.get("Volumes") or ()), resources=resources,
            image=config.get("Image") or ""))
    return containers


@dataclass
class Images:
    by_ref: dict  # "repo:tag" or "repo@digest" -> image id
    refs_by_id: dict  # image id -> ["repo:tag", ...]
    dangling: set  # ids of untagged images
    digests_by_id: dict = field(default_factory=dict)  # image id -> ["repo@sha256:...", ...]

    def resolve(self, image):
        return self.by_ref.get(normalize_image_ref(image))

    def digest_ref(self, image_id):
        """A reference that pulls exactly this image again, or "" for a local-only image."""
        return next(iter(self.digests_by_id.get(image_id, ())), "")

    @property
    def ids(self):
        return set(self.refs_by_id) | self.dangling


# Tab-separated: without --digests the docker CLI prints an empty Digest for an image
# known only as repo@digest (the state an image is left in when a pull moves its tag).
IMAGES_FORMAT = "{{.ID}}\t{{.Repository}}\t{{.Tag}}\t{{.Digest}}"


def parse_images(text):
    images = Images({}, {}, set())
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        image_id, repository, tag, digest = parts
        if repository == "<none>":
            images.dangling.add(image_id)
            continue
        images.refs_by_id.setdefault(image_id, [])
        if tag != "<none>":
            images.by_ref[f"{repository}:{tag}"] = image_id
            images.refs_by_id[image_id].append(f"{repository}:{tag}")
        if digest not in ("<none>", ""):
            images.by_ref[f"{repository}@{digest}"] = image_id
            images.digests_by_id.setdefault(image_id, []).append(f"{repository}@{digest}")
    return images


@dataclass
class HostState:
    containers: list
    images: Images


def only_vanished(result):
    """`docker inspect` of a container removed since the listing fails for it alone."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code == 1 and all("No such" in line for line in lines)


def read_images(docker):
    return parse_images(docker.read("images", "--no-trunc", "--digests", "--format", IMAGES_FORMAT))


class StateUnreadable(DockerupError):
    """The engine answered, but not with its state: nothing can be planned."""


def read_state(docker):
    """Three docker calls whatever the number of containers: the container and
    image listings (side by side), then one inspect of every container."""
    try:
        return read_state_unguarded(docker)
    except DaemonUnreachable:
        raise
    except DockerError as e:
        raise StateUnreadable(f"cannot read the engine's state, so nothing was changed: {e}") from e


def read_state_unguarded(docker):
    listed = {}

    def list_images():
        try:
            listed["images"] = read_images(docker)
        except DockerupError as e:
            listed["error"] = e

    worker = threading.Thread(target=list_images)
    worker.start()
    try:
        ids = docker.read("ps", "--all", "--quiet", "--no-trunc").split()
    finally:
        worker.join()
    if "error" in listed:
        raise listed["error"]
    inspected = docker.read("inspect", "--type", "container", *ids, tolerate=only_vanished) if ids else "[]"
    return HostState(parse_containers(inspected), listed["images"])


def own_container_id():
    """The id of the container this process runs in, if any: docker bind-mounts its
    /etc/hostname from the engine's directory for it. Only that mount counts: on a
    host, the mount table also lists other containers' files (the /dev/shm of one
    with shareable IPC) under their directories."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                match = re.search(r"/containers/([0-9a-f]{64})/hostname$", fields[3]) if len(fields) > 4 else None
                if match and fields[4] == "/etc/hostname":
                    return match.group(1)
    except OSError:
        return None
    return None


def host_identity():
    """What tells this host from the others of a fleet, for update.rolling's delays:
    systemd's /etc/machine-id, else the host name. An image made from a systemd
    distribution carries an empty or "uninitialized" machine-id of its own, which
    would be the same on every host."""
    try:
        with open("/etc/machine-id", encoding="ascii") as f:
            machine_id = f.read(64).strip()
    except (OSError, ValueError):
        machine_id = ""
    if machine_id and machine_id != "uninitialized":
        return machine_id
    return os.uname().nodename


# ---- What dockerup remembers ------------------------------------------------------
# The engine's labels say what each container is; the cache adds what only history
# can tell: updates that failed, the image each update replaced, rollbacks' pins, and
# the images this instance used (for cleanup). One file per scope, written whole.
# Losing it costs at most one more attempt at an update that failed before.

RETRY_FIRST, RETRY_MAX = 600.0, 86400.0  # seconds before a failed update is tried again
MEMORY_VERSION = 1
LEGACY_IMAGE_RECORD = "images.json"  # dockerup 0.1's record of used images


@dataclass
class Failure:
    """An update (spec hash and image) that failed. It is not tried again until the
    spec or the image changes, `dockerup retry` is run, or the back-off has passed;
    an update rolled back by hand has no back-off."""

    spec_hash: str
    image_id: str
    image: str  # the reference, for messages
    at: float
    reason: str
    attempts: int = 1
    manual: bool = False

    @property
    def retry_at(self):
        if self.manual:
            return None
        return self.at + min(RETRY_FIRST * 2 ** (self.attempts - 1), RETRY_MAX)

    def matches(self, spec_hash, image_id):
        return self.spec_hash == spec_hash and self.image_id == image_id


@dataclass
class Pin:
    """A rollback's hold on an earlier image, kept while the tag points where it did."""

    image_id: str
    ref: str  # "repository@sha256:...", to pull it again; "" when unknown
    tag_image_id: str  # the image the spec's tag pointed at when it was pinned


@dataclass
class Previous:
    """The image an update replaced: `dockerup rollback` goes back to it."""

    image_id: str
    ref: str
    at: float


@dataclass
class Sighting:
    """When this host first saw the image an update.rolling spec's tag points at: its
    turn to take it comes a delay of its own after that."""

    image_id: str
    at: float


@dataclass
class LastRun:
    """The last run that was not a dry run, for `dockerup status` and the metrics."""

    at: float  # when it ended
    duration: float
    exit_code: int
    summary: str  # its last log line


@dataclass
class Memory:
    images: set = field(default_factory=set)  # image ids this scope's containers used
    failures: dict = field(default_factory=dict)  # identity -> Failure
    previous: dict = field(default_factory=dict)  # identity -> Previous
    pins: dict = field(default_factory=dict)  # identity -> Pin
    rollbacks: set = field(default_factory=set)  # identities `dockerup rollback` names (not saved)
    sightings: dict = field(default_factory=dict)  # identity -> Sighting of the image a rolling spec's tag is at
    last_run: LastRun = None
    actions_total: dict = field(default_factory=dict)  # action kind -> how many were carried out, ever
    runs_total: dict = field(default_factory=dict)  # run result -> how many runs had it, ever
    notified: set = field(default_factory=set)  # keys of standing conditions already notified (event_key)

    def to_json(self):
        from dataclasses import asdict

        return {"version": MEMORY_VERSION, "images": sorted(self.images),
                "failures": {k: asdict(v) for k, v in sorted(self.failures.items())},
                "previous": {k: asdict(v) for k, v in sorted(self.previous.items())},
                "pins": {k: asdict(v) for k, v in sorted(self.pins.items())},
                "sightings": {k: asdict(v) for k, v in sorted(self.sightings.items())},
                "last_run": asdict(self.last_run) if self.last_run else None,
                "actions_total": dict(sorted(self.actions_total.items())),
                "runs_total": dict(sorted(self.runs_total.items())),
                "notified": sorted(self.notified)}

    @classmethod
    def from_json(cls, value):
        """Raises ValueError (or TypeError) for anything this dockerup would not write."""
        def entries(key, kind):
            return {identity: typed(kind, fields) for identity, fields in value.get(key, {}).items()}

        def strings(key):
            items = value.get(key, [])
            if not (isinstance(items, list) and all(isinstance(item, str) for item in items)):
                raise ValueError(f"{key}: expected strings")
            return set(items)

        def counters(key):
            items = value.get(key, {})
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in items.values()):
                raise ValueError(f"{key}: expected counts")
            return dict(items)

        last_run = value.get("last_run")
        return cls(strings("images"), entries("failures", Failure), entries("previous", Previous), entries("pins", Pin),
                   last_run=typed(LastRun, last_run) if last_run is not None else None,
                   actions_total=counters("actions_total"), runs_total=counters("runs_total"),
                   notified=strings("notified"), sightings=entries("sightings", Sighting))


def typed(kind, fields):
    """A dataclass from a JSON object whose every value has its field's type."""
    from dataclasses import fields as fields_of

    for spec in fields_of(kind):
        value = fields.get(spec.name)
        expected = (int, float) if spec.type is float else spec.type
        if spec.name in fields and (not isinstance(value, expected) or isinstance(value, bool) != (spec.type is bool)):
            raise ValueError(f"{kind.__name__}.{spec.name}: expected {spec.type.__name__}")
    return kind(**fields)


def memory_file(scope):
    return f"state.{scope}.json" if scope else "state.json"


def read_memory(cache_dir, scope):
    """What this scope's earlier runs remembered; a damaged file is as good as none."""
    data = read_cache_bytes(cache_dir, memory_file(scope))
    if data is None:
        legacy = read_cache_list(cache_dir, LEGACY_IMAGE_RECORD) if not scope else []
        return Memory(images=set(legacy))
    try:
        value = json.loads(data)
        if value.get("version") != MEMORY_VERSION:
            raise ValueError("another version")
        return Memory.from_json(value)
    except (ValueError, TypeError, AttributeError):
        log.warning("%s: not what this dockerup writes there; starting afresh",
                    os.path.join(cache_dir, memory_file(scope)))
        return Memory()


def save_memory(cache_dir, scope, memory, before=None):
    if before is None or memory.to_json() != before.to_json():
        write_cache_bytes(cache_dir, memory_file(scope), json.dumps(memory.to_json(), indent=1).encode())


# ============================================================================
# Planning actions
# ============================================================================
# plan_changes() is a pure function of (what is declared, what the engine has, what
# earlier runs remembered, the time): it decides everything and changes nothing. The
# executor below carries it out.
#
# A spec's *group* is every container of this scope labelled with its identity.
# Normally that is one container; an update leaves two for a while (the replacement,
# and the replaced container kept stopped aside for probation), and an interrupted
# update can leave others (a replacement under a temporary name, a retired
# predecessor). The plan always ends with at most one container plus the one kept on
# probation, and removes the rest, so an interruption at any point is finished by the
# next run.


class Outcome(enum.Enum):
    """What a run does about one declared spec (docker-compose's ConvergencePlan)."""

    KEEP = "as declared"
    START = "start"
    CREATE = "create"
    REPLACE = "replace"
    UPDATE = "update in place"
    PROBATION = "on probation"
    ROLL_BACK = "roll back"
    HELD = "update held back"  # a remembered failure, a pin or update.rolling keeps what runs
    FINISHED = "finished"  # a one-shot container that exited 0
    STALE = "image unavailable"  # the running container is left as it is
    FAILED = "failed"  # cannot be converged; a problem says why


@dataclass(frozen=True)
class Want:
    """What a spec's container must be: its labels, and the image it must run."""

    labels: dict
    image_id: str  # None while a dry run assumes a pull that did not happen
    image: str  # the reference docker run gets: the spec's, or a pinned digest
    pinned: bool = False

    @property
    def spec_hash(self):
        return self.labels[LABEL_HASH]


@dataclass(frozen=True, eq=False)
class RemoveContainer:
    container: Container
    reason: str


@dataclass(frozen=True)
class Await:
    """dependsOn: before the container starts, `container` must meet `condition` (START,
    HEALTHY, COMPLETE, SUCCESS) within `timeout` seconds."""

    container: str
    condition: str
    timeout: float


@dataclass(frozen=True, eq=False)
class CreateContainer:
    spec: Spec
    want: Want
    reason: str
    awaits: tuple = ()  # Awaits


@dataclass(frozen=True, eq=False)
class StartContainer:
    spec: Spec
    container: Container
    reason: str
    awaits: tuple = ()  # Awaits


@dataclass(frozen=True, eq=False)
class RenameContainer:
    spec: Spec
    container: Container
    reason: str


@dataclass(frozen=True, eq=False)
class UpdateContainer:
    """Settings docker can change on a running container (IN_PLACE_FIELDS)."""

    spec: Spec
    container: Container
    flags: tuple
    reason: str


@dataclass(frozen=True, eq=False)
class ReplaceContainer:
    spec: Spec
    old: Container
    want: Want
    reason: str
    eager: bool = False
    not_eager_because: str = ""
    carry: tuple = ()  # (volume name, container path) of the old container's anonymous volumes
    keep_old: bool = False  # keep the old container stopped aside for probation
    previous: Previous = None  # what the old container ran, remembered for `dockerup rollback`
    attempts: int = 1  # counts the attempts at this very update, for the back-off
    awaits: tuple = ()  # Awaits


@dataclass(frozen=True, eq=False)
class RollBack:
    """Put back the container a replacement on probation replaced."""

    spec: Spec
    current: Container
    kept: Container
    failure: Failure
    reason: str


@dataclass(frozen=True, eq=False)
class RemoveImage:
    image_id: str
    refs: tuple  # tags to remove; the id itself for an untagged image
    reason: str


# What logs, the JSON plan, metrics and notifications call each kind of action.
ACTION_KINDS = {RemoveContainer: "remove", CreateContainer: "create", StartContainer: "start",
                RenameContainer: "rename", UpdateContainer: "update", ReplaceContainer: "replace",
                RollBack: "rollback", RemoveImage: "remove-image"}
PULL = "pull"  # pulls run before planning: they are not actions of a Plan


@dataclass
class Plan:
    actions: list
    problems: list  # specs that cannot be converged, with the reason
    notes: list  # decisions worth a warning, such as a removal or an update held back
    kept: list  # specs already as declared
    outcomes: dict = field(default_factory=dict)  # identity -> Outcome
    memory: Memory = field(default_factory=Memory)  # what to remember, before the actions' results
    held_until: dict = field(default_factory=dict)  # identity -> when update.rolling lets its new image in
    current: dict = field(default_factory=dict)  # identity -> the container the plan leaves in place


def plan_pulls(specs, images, config, memory=None):
    """image -> why to pull it. A missing image is always pulled; a present one
    only where both the global and the spec's pull setting allow. A pinned image
    that is no longer local is pulled by its digest."""
    pulls, seen = {}, set()
    for spec in specs:
        reference = normalize_image_ref(spec.image)
        if reference in seen:
            continue
        if images.resolve(spec.image) is None:
            pulls[spec.image] = "image missing locally"
        elif spec.may_pull(config):
            pulls[spec.image] = "look for a newer image"
        else:
            continue
        seen.add(reference)
    memory = memory or Memory()
    held = [(pin.image_id, pin.ref, f"{identity} is pinned to this image by a rollback")
            for identity, pin in sorted(memory.pins.items())]
    held += [(memory.previous[identity].image_id, memory.previous[identity].ref, f"roll {identity} back to it")
             for identity in sorted(memory.rollbacks) if identity in memory.previous]
    for image_id, ref, why in held:
        if ref and image_id not in images.ids and ref not in pulls:
            pulls[ref] = why
    return pulls


def desired(spec, images, memory, scope, pending):
    """The Want of a spec, or None when its image is neither local nor on its way."""
    labels = spec_labels(spec, scope)
    image_id = images.resolve(spec.image)
    if image_id is None and normalize_image_ref(spec.image) not in pending:
        return None
    pin = memory.pins.get(spec.identity)
    if pin and image_id == pin.tag_image_id and (pin.image_id in images.ids or pin.ref in pending):
        return Want(labels, pin.image_id, pin.ref or pin.image_id, pinned=True)
    return Want(labels, image_id, spec.image)


@dataclass(frozen=True)
class Context:
    """What plan_spec needs besides the spec: settings, the time, the host's containers
    by name, and the container each spec planned so far keeps (for its dependents)."""

    config: Config
    now: float
    own_id: str
    images: Images
    by_name: dict
    current_of: dict
    host: str = ""  # host_identity(): what makes this host's update.rolling delays its own


@dataclass
class SpecPlan:
    outcome: Outcome
    actions: list = field(default_factory=list)
    current: Container = None  # the container left in place, if any
    notes: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def plan_changes(declared, state, memory=None, config=None, *, now=None, own_id=None, pending_pulls=(),
                 pull_errors=None, host_identity=""):
    """Decide every action. `memory` is what earlier runs remembered (read_memory);
    `pending_pulls` are images that a dry run would have pulled: they are assumed to
    arrive, unchanged where already present. `pull_errors` says why a missing image
    could not be pulled. `host_identity` sets this host's update.rolling delays. The
    plan's memory is `memory` as this plan leaves it."""
    config = config or default_config()
    memory = copy.deepcopy(memory) if memory is not None else Memory()
    now = time.time() if now is None else now
    plan = Plan([], [], [], [], memory=memory)
    ours = [c for c in state.containers if c.managed and c.scope == config.scope]
    groups, orphans = group_containers(declared, ours)
    leaving = set()

    for container in orphans:
        source = container.labels.get(LABEL_SOURCE, SOURCE_CONFDIR)
        if source in declared.incomplete_sources:
            plan.notes.append(f"not removing {container.short}: its source ({source}) could not be read completely")
            continue
        plan.actions.append(RemoveContainer(container, f"{container.identity} is no longer declared"))
        leaving.add(container.id)
    for container in state.containers:
        if not container.managed and config.exclusive and container.id != own_id:
            if declared.incomplete_sources:
                plan.notes.append(f"not removing {container.short} (exclusive mode): a source could not be read "
                                  "completely")
                continue
            plan.actions.append(RemoveContainer(container, "not declared, and exclusive=true"))
            leaving.add(container.id)

    by_name = {c.name: c for c in state.containers if c.id not in leaving}
    holders = {name: c for name, c in by_name.items() if not (c.managed and c.scope == config.scope)}
    moved, restarted, failed, current_of = set(), set(), set(), {}
    pending = {normalize_image_ref(image) for image in pending_pulls}
    context = Context(config, now, own_id, state.images, by_name, current_of, host_identity)
    declared_by_name = {spec.name: spec for spec in declared.specs if spec.name}
    held_images = set()
    if not declared.incomplete_sources:
        for identity in memory.sightings.keys() - {spec.identity for spec in declared.specs}:
            del memory.sightings[identity]
    for spec in declared.specs:
        holder = holders.get(spec.name)
        if holder:
            owner = (f"belongs to dockerup scope {holder.scope!r}" if holder.managed and holder.scope
                     else "belongs to another dockerup instance's scope" if holder.managed
                     else "was not created by dockerup; remove or rename it, or set exclusive=true")
            plan.problems.append(spec.problem("name", f"container {holder.short} already has this name and {owner}"))
            failed.add(spec.name)
            plan.outcomes[spec.identity] = Outcome.FAILED
            continue
        blocked = blocked_reason(spec, failed, planning=True)
        if blocked:
            plan.problems.append(spec.problem("", blocked))
            failed.add(spec.name)
            plan.outcomes[spec.identity] = Outcome.FAILED
            continue
        group = groups.get(spec.identity, [])
        pin = memory.pins.get(spec.identity)
        tag_image_id = state.images.resolve(spec.image)
        if pin and tag_image_id and tag_image_id != pin.tag_image_id:
            del memory.pins[spec.identity]
            plan.notes.append(f"{spec.label}: {spec.image} points at another image now; the pin to "
                              f"{short_id(pin.image_id)} from a rollback is lifted")
        want = desired(spec, state.images, memory, config.scope, pending)
        if want is None:
            why = (pull_errors or {}).get(normalize_image_ref(spec.image), "no pull was attempted")
            decision = plan_unavailable_image(spec, group, why)
        else:
            want, hold = plan_rolling(spec, group, want, memory, context)
            followed = [d for d in spec.attachments if d in moved or (d in restarted and d in spec.shared_namespaces)]
            decision = plan_spec(spec, group, want, followed, memory, context)
            decision.actions = awaiting(spec, decision.actions, declared_by_name)
            if hold:
                plan.held_until[spec.identity] = hold.until
                held_images.add(want.image_id)
                if decision.outcome == Outcome.KEEP:
                    decision.outcome = Outcome.HELD
                if hold.first or config.dry_run:  # logged once, on the run that sees the image first
                    decision.notes.append(hold.note(spec))
        plan.actions += decision.actions
        plan.outcomes[spec.identity] = decision.outcome
        plan.notes += decision.notes
        plan.problems += decision.problems
        for action in decision.actions:
            if isinstance(action, RemoveContainer):
                leaving.add(action.container.id)
            elif isinstance(action, ReplaceContainer) and not action.keep_old:
                leaving.add(action.old.id)
        if decision.current is not None:
            current_of[spec.name] = plan.current[spec.identity] = decision.current
        if decision.outcome in (Outcome.CREATE, Outcome.REPLACE, Outcome.ROLL_BACK):
            moved.add(spec.name)
        elif decision.outcome == Outcome.START:
            restarted.add(spec.name)
        elif decision.outcome in (Outcome.KEEP, Outcome.UPDATE, Outcome.PROBATION, Outcome.FINISHED):
            plan.kept.append(spec)
        elif decision.outcome == Outcome.FAILED:
            failed.add(spec.name)

    plan.actions += plan_image_cleanup(declared, state, leaving, memory, config, ours, held_images)
    return plan


def blocked_reason(spec, failed, planning):
    """Why a spec is not converged because a container it needs failed (`failed` names
    them), or "". An essential container of a task that cannot be started keeps the
    task's later containers from starting, as ECS would not start the task."""
    needed = [name for name in spec.dependencies if name in failed]
    if needed:
        return f"not converged: it depends on {', '.join(needed)}, which {'could not be' if planning else 'failed'}"
    essentials = [name for name in spec.task_essentials if name in failed and name != spec.name]
    if essentials:
        return (f"not started: {', '.join(essentials)}, essential to task {spec.task}, "
                f"{'cannot be started' if planning else 'failed'}")
    return ""


def awaiting(spec, actions, specs_by_name):
    """The actions that start the spec's container, made to wait for its dependsOn
    conditions first, each for at most its target's startTimeout."""
    awaits = tuple(Await(d["containerName"], d["condition"],
                         specs_by_name[d["containerName"]].doc.get("startTimeout", DEFAULT_START_TIMEOUT))
                   for d in spec.doc.get("dependsOn", ()))
    if not awaits:
        return actions
    return [replace(action, awaits=awaits) if isinstance(action, (CreateContainer, StartContainer, ReplaceContainer))
            else action for action in actions]


def group_containers(declared, ours):
    """identity -> this scope's containers of that spec, and the orphans: containers of
    identities no longer declared. An unnamed spec without containers adopts an orphan
    made from exactly its settings (a renamed file, or a container of dockerup 0.1), or
    one dockerup 0.1 gave the same identity when every source could be read."""
    groups, orphans = {}, []
    wanted = {spec.identity for spec in declared.specs}
    for container in ours:
        if container.identity in wanted:
            groups.setdefault(container.identity, []).append(container)
        else:
            orphans.append(container)
    trust_legacy = not declared.incomplete_sources
    for spec in declared.specs:
        if spec.name or spec.identity in groups:
            continue
        same = [c for c in orphans if made_from(c, spec)]
        same = same or [c for c in orphans if trust_legacy and c.identity == spec.legacy_identity
                        and is_legacy_hash(c.labels.get(LABEL_HASH))]
        if same:
            groups[spec.identity] = same
            orphans = [c for c in orphans if c not in same]
    return groups, orphans


def made_from(container, spec):
    """Whether the container's labels say it was made from exactly this spec."""
    label = container.labels.get(LABEL_HASH)
    if is_legacy_hash(label):
        return label == legacy_fingerprint(spec.doc)[0]
    return label == fingerprint(spec.doc)[0] and container.resources == resource_settings(spec.doc)


def plan_unavailable_image(spec, group, why):
    """The image is neither local nor pullable: touch nothing of this spec."""
    alive = [c for c in group if c.alive]
    consequence = f"{alive[0].short} keeps running as it is" if alive else f"cannot start {spec.label}"
    problem = spec.problem("image", f"{spec.image} is not available locally and pulling it failed ({why}); "
                                    f"{consequence}")
    return SpecPlan(Outcome.STALE if alive else Outcome.FAILED, current=alive[0] if alive else None,
                    problems=[problem])


def plan_spec(spec, group, want, followed, memory, context):
    """The SpecPlan for one spec with an available image."""
    config, now = context.config, context.now

    def fresh(c):
        if is_legacy_hash(c.labels.get(LABEL_HASH)):
            same_spec = c.labels.get(LABEL_HASH) == legacy_fingerprint(spec.doc)[0]
        else:
            same_spec = c.labels.get(LABEL_HASH) == want.spec_hash
        return same_spec and (want.image_id is None or c.image_id == want.image_id)

    def proper(c):
        return spec.name is None or c.name == spec.name

    def remove_others(keep, why=f"left over from an earlier update of {spec.label}"):
        return [RemoveContainer(c, why) for c in group if c not in keep]

    if not group:
        return SpecPlan(Outcome.CREATE, [CreateContainer(spec, want, "absent")])
    members = sorted(group, key=lambda c: (not fresh(c), not c.alive, not proper(c), -c.created))
    current = members[0] if fresh(members[0]) else None
    stale_reason = followed_reason(followed) or (current and attachment_change(spec, current, context))

    # An update on probation: its predecessor is kept, stopped, until it proves itself.
    kept = [c for c in members[1:] if not c.alive and not fresh(c)] if current and not stale_reason else []
    if kept and config.probation > 0 and current.id != context.own_id:
        return plan_probation(spec, current, kept[0], want, remove_others, memory, context)

    if spec.identity in memory.rollbacks:
        return plan_pin_previous(spec, members, current, want, remove_others, memory, context)

    # An update that failed before is not tried again until something changes.
    failure = memory.failures.get(spec.identity)
    if failure and (not failure.matches(want.spec_hash, want.image_id) or (current and current.alive)):
        del memory.failures[spec.identity]  # the spec or the image moved on, or the update now runs
        failure = None
    if failure and not (current and current.alive) and not stale_reason:
        retry_at = failure.retry_at
        if retry_at is not None and now >= retry_at:
            notes = [f"{spec.label}: trying again the update to {want.image} that failed at {clock(failure.at)} "
                     f"({failure.reason})"]
            decision = plan_update(spec, members, want, "retry of a failed update", remove_others, failure, context)
            decision.notes += notes
            return decision
        old = next((c for c in members if not fresh(c)), None)
        if old is not None:
            return plan_held(spec, old, want, failure, remove_others)

    if current and current.alive and not stale_reason:
        actions = remove_others([current])
        if not proper(current):
            actions.append(RenameContainer(spec, current, "finish an interrupted update"))
        update = in_place_changes(spec, current)
        if isinstance(update, str):
            return plan_update(spec, members, want, update, remove_others, None, context)
        if update:
            actions.append(UpdateContainer(spec, current, tuple(update.flags), update.reason))
            return SpecPlan(Outcome.UPDATE, actions, current)
        return SpecPlan(Outcome.KEEP, actions, current, notes=pin_notes(spec, want, memory))
    if (current and proper(current) and current.status != "dead" and not stale_reason
            and not any(c.alive for c in group)):
        return plan_stopped(spec, current, remove_others)
    return plan_update(spec, members, want, stale_reason, remove_others, None, context)


def followed_reason(followed):
    return f"{', '.join(followed)} is being recreated, and this container refers to it" if followed else ""


def attachment_change(spec, container, context):
    """Why a container no longer follows a container it refers to, or "": dependents
    must point at their target's current container, whatever happened in between (an
    interrupted run, a rollback, a person's docker rm)."""
    for path, target_name in container_references(spec.doc):
        target = context.current_of.get(target_name)
        if target is None or path.startswith("dependsOn"):  # dependsOn only orders: nothing to follow
            continue
        if path == "network":
            if container.network_mode != f"container:{target.id}" or container.started_at < target.started_at:
                return f"it shares the network of an earlier {target_name} container"
        elif path in NAMESPACE_FIELDS:
            if container.started_at < target.started_at:
                what = "process" if path == "pidMode" else "IPC"
                return f"it shares the {what} namespace of an earlier {target_name} container"
        elif path.startswith("volumes"):
            own = {(m.name or m.source, m.destination) for m in container.mounts}
            if any((m.name or m.source, m.destination) not in own for m in target.mounts):
                return f"it mounts the volumes of an earlier {target_name} container"
        elif container.created < target.created:
            return f"it links to an earlier {target_name} container"
    return ""


def plan_probation(spec, current, kept, want, remove_others, memory, context):
    """The replacement has `probation` seconds to fail; the kept container goes back if
    it does, or away once the time is up."""
    config, now = context.config, context.now
    failure = probation_failure(spec, current)
    requested = spec.identity in memory.rollbacks
    if failure or requested:
        reason = "rolled back by hand (dockerup rollback)" if requested else failure
        earlier = memory.failures.get(spec.identity)
        attempts = earlier.attempts + 1 if earlier and earlier.matches(want.spec_hash, current.image_id) else 1
        remembered = Failure(want.spec_hash, current.image_id, want.image, now, reason, attempts, manual=requested)
        actions = remove_others([current, kept]) + [RollBack(spec, current, kept, remembered, reason)]
        return SpecPlan(Outcome.ROLL_BACK, actions, kept)
    until = current.created + config.probation
    finished = spec.one_shot and current.status == "exited"  # exit 0, or probation_failure would say so
    if now < until and not finished:
        actions = remove_others([current, kept])
        if spec.name and current.name != spec.name:
            actions.append(RenameContainer(spec, current, "finish an interrupted update"))
        return SpecPlan(Outcome.PROBATION, actions, current)
    why = (f"{spec.label} finished, so its update needs no probation" if finished
           else f"probation of {spec.label} ended: it ran {config.probation:g}s without failing")
    return SpecPlan(Outcome.FINISHED if finished else Outcome.KEEP, remove_others([current], why), current,
                    notes=pin_notes(spec, want, memory))


def plan_pin_previous(spec, members, current, want, remove_others, memory, context):
    """`dockerup rollback` after probation: recreate the container from the image its
    last update replaced, and pin it there until the tag moves."""
    previous = memory.previous.get(spec.identity)
    running = current or next(iter(members), None)
    if previous is None or running is None or running.image_id == previous.image_id:
        why = ("no earlier image is remembered for it" if previous is None or running is None
               else f"it already runs {short_id(previous.image_id)}, the image its last update replaced")
        return SpecPlan(Outcome.FAILED if running is None else Outcome.KEEP, current=running,
                        problems=[spec.problem("", f"nothing to roll back to: {why}")])
    if previous.image_id not in context.images.ids and not previous.ref:
        return SpecPlan(Outcome.KEEP, current=running, problems=[spec.problem(
            "", f"cannot roll back: image {short_id(previous.image_id)} is no longer on this host, and the "
                "registry it came from is unknown")])
    memory.pins[spec.identity] = Pin(previous.image_id, previous.ref, want.image_id or "")
    pinned = Want(want.labels, previous.image_id, previous.ref or previous.image_id, pinned=True)
    reason = f"rolled back by hand to {short_id(previous.image_id)} (dockerup rollback)"
    return plan_update(spec, members, pinned, reason, remove_others, None, context)


@dataclass(frozen=True)
class RollingHold:
    """A new image that update.rolling keeps out until this host's turn."""

    image: str
    image_id: str
    until: float
    window: float
    first: bool  # this run is the first to see the image

    def note(self, spec):
        return (f"update of {spec.label} to {self.image} ({short_id(self.image_id)}) held until {clock(self.until)} "
                f"(rolling: this host's turn in a {self.window:g}s window)")


def rolling_delay(host, image_id, window):
    """Seconds this host waits after first seeing `image_id` before it applies it:
    spread evenly over [0, window) across hosts, the same every time for one host and
    image, and in another order for the next image, so that no host is always first."""
    digest = hashlib.sha256(f"{host}\n{image_id}".encode()).digest()
    return window * int.from_bytes(digest[:8], "big") / 2 ** 64


def plan_rolling(spec, group, want, memory, context):
    """update.rolling: a new image for the tag of a spec that is otherwise unchanged
    waits for this host's turn. Returns the Want to plan with (while held, the image
    the container runs, so that everything else, such as a probation or an in-place
    update, goes on as usual) and a RollingHold, or None. A changed spec or a missing
    container is never held; a failed update of the image is the failure memory's."""
    window = spec.rolling_window
    if window is None:
        memory.sightings.pop(spec.identity, None)
        return want, None
    failure = memory.failures.get(spec.identity)
    same_spec = [c for c in group if c.labels.get(LABEL_HASH) == want.spec_hash and c.status != "dead"]
    if (not want.image_id or want.pinned or spec.identity in memory.rollbacks or not same_spec
            or any(c.image_id == want.image_id for c in same_spec)
            or (failure and failure.matches(want.spec_hash, want.image_id))):
        return want, None
    sighting = memory.sightings.get(spec.identity)
    first = sighting is None or sighting.image_id != want.image_id
    if first:
        sighting = memory.sightings[spec.identity] = Sighting(want.image_id, context.now)
    until = sighting.at + rolling_delay(context.host, want.image_id, window)
    if context.now >= until:
        return want, None
    old = min(same_spec, key=lambda c: (not c.alive, bool(spec.name) and c.name != spec.name, -c.created))
    kept = Want(want.labels, old.image_id, context.images.digest_ref(old.image_id) or old.image_id)
    return kept, RollingHold(want.image, want.image_id, until, window, first)


def probation_failure(spec, container):
    """Why a replacement on probation counts as failed, or ""."""
    if container.status == "exited" and spec.one_shot and container.exit_code == 0:
        return ""
    if container.status in ("exited", "dead", "created"):
        return f"it {container.status} with code {container.exit_code} after the update"
    if container.restart_count:
        return f"docker restarted it {plural(container.restart_count, 'time')} after the update"
    if container.health == "unhealthy":
        return "it became unhealthy after the update"
    return ""


def plan_held(spec, old, want, failure, remove_others):
    """The running container stays; the failed update is not tried again yet."""
    retry_at = failure.retry_at
    when = (f"next try at {clock(retry_at)}" if retry_at is not None
            else "it is tried again when the spec or the image changes")
    note = (f"{spec.label}: not updating to {want.image} ({short_id(want.image_id or '')}): it failed at "
            f"{clock(failure.at)} ({failure.reason}); {when}, or run `dockerup retry {spec.label}`")
    actions = remove_others([old], f"a failed update of {spec.label}")
    if spec.name and old.name != spec.name:
        actions.append(RenameContainer(spec, old, "finish an interrupted rollback"))
    if not old.alive and old.status != "dead" and not (spec.one_shot and old.exit_code == 0):
        actions.append(StartContainer(spec, old, f"container is {old.status}; its update failed before"))
    return SpecPlan(Outcome.HELD, actions, old, notes=[note])


def plan_stopped(spec, container, remove_others):
    """A container as declared that is not running."""
    actions = remove_others([container])
    if spec.one_shot and container.exit_code == 0:
        return SpecPlan(Outcome.FINISHED, actions, container)
    if spec.stays_exited:
        problem = spec.problem("", f"{container.short} exited with code {container.exit_code}; {spec.stays_exited}, "
                                   "so it stays stopped")
        return SpecPlan(Outcome.FAILED, actions, container, problems=[problem])
    return SpecPlan(Outcome.START, actions + [StartContainer(spec, container, f"container is {container.status}")],
                    container)


@dataclass
class InPlace:
    flags: list
    reason: str


def in_place_changes(spec, container):
    """The docker update that brings the container's IN_PLACE_FIELDS to the spec's, None
    when they match, or (a string) why only a replacement can do it."""
    if is_legacy_hash(container.labels.get(LABEL_HASH)):
        return None  # dockerup 0.1's hash covered these settings too
    wanted, actual = resource_settings(spec.doc), container.resources
    changed = [key for key in IN_PLACE_FIELDS if wanted[key] != actual.get(key)]
    removed = [key for key in changed if not wanted[key] and key != "restart"]
    if removed:
        return f"{', '.join(removed)} removed from the spec (docker cannot remove a limit from a container)"
    if not changed:
        return None
    flags = [flag for key in changed for flag in UPDATE_FLAGS[key](wanted[key])]
    return InPlace(flags, f"spec changed: {', '.join(changed)}; updated in place")


def plan_update(spec, members, want, reason, remove_others, failure, context):
    """Replace the best of the group (alive, under the spec's name) with a new container."""
    old = min(members, key=lambda c: (not c.alive, bool(spec.name) and c.name != spec.name, -c.created))
    actions = remove_others([old])
    if old.status == "dead" and not reason:
        reason = "container is dead"
    action = plan_replacement(spec, old, want, reason or replace_reason(spec, old, want), context,
                              attempts=failure.attempts + 1 if failure else 1)
    return SpecPlan(Outcome.REPLACE, actions + [action], None)


def plan_replacement(spec, old, want, reason, context, attempts=1):
    config, own = context.config, old.id == context.own_id
    carry = carried_volumes(spec, old, context.by_name)
    # dockerup replacing its own container must start the successor first: once its
    # own container stops, nothing is left to start one.
    eager, not_eager_because = (spec.eager or own) and old.alive, ""
    if eager and not own:
        wanted_ports = {(int(m["hostPort"]), m.get("protocol", "tcp")) for m in spec.doc.get("portMappings", [])
                        if "hostPort" in m}
        clash = sorted(wanted_ports & old.host_ports)
        if carry:
            not_eager_because = (f"its data ({', '.join(path for _, path in carry)}) must never be used by two "
                                 "containers at once")
        elif spec.doc.get("network") == "host":
            not_eager_because = "with host networking two containers at once would compete for the host's ports"
        elif clash:
            not_eager_because = f"host port {clash[0][0]}/{clash[0][1]} cannot be bound by two containers at once"
        eager = not not_eager_because
    previous = None
    if want.image_id and old.image_id != want.image_id and not want.pinned:
        previous = Previous(old.image_id, context.images.digest_ref(old.image_id), context.now)
    keep_old = config.probation > 0 and old.alive and not own
    return ReplaceContainer(spec, old, want, reason, eager, not_eager_because, carry, keep_old, previous, attempts)


def carried_volumes(spec, old, by_name):
    """(volume name, path) of the old container's anonymous volumes that its replacement
    mounts at the same paths (docker-compose does the same): the image's VOLUMEs and the
    spec's volumes without hostPath. Paths the spec now binds elsewhere, and volumes that
    come from another container (volumes[].from), are not carried."""
    anonymous = {v["containerPath"] for v in spec.doc.get("volumes", []) if "containerPath" in v and "hostPath" not in v}
    bound = {v["containerPath"] for v in spec.doc.get("volumes", []) if "hostPath" in v}
    sources = [by_name.get(v["from"]) for v in spec.doc.get("volumes", []) if "from" in v]
    sources += [by_name.get(ref.split(":")[0]) for ref in old.volumes_from]
    shared = {m.destination for source in sources if source for m in source.mounts}
    paths = (anonymous | old.declared_volumes) - bound - shared
    return tuple(sorted((m.name, m.destination) for m in old.mounts
                        if m.kind == "volume" and m.name and m.destination in paths))


def replace_reason(spec, old, want):
    label = old.labels.get(LABEL_HASH)
    if is_legacy_hash(label):
        if label != legacy_fingerprint(spec.doc)[0]:
            fields = changed_fields(old.labels.get(LABEL_FIELDS), legacy_fingerprint(spec.doc)[1])
            return f"spec changed: {', '.join(fields)}" if fields else "spec changed"
    elif label != want.spec_hash:
        fields = changed_fields(old.labels.get(LABEL_FIELDS), want.labels[LABEL_FIELDS])
        return f"spec changed: {', '.join(fields)}" if fields else "spec changed"
    if want.image_id and old.image_id != want.image_id:
        if want.pinned:
            return f"pinned to {short_id(want.image_id)} by a rollback"
        return f"image updated: {short_id(old.image_id)} -> {short_id(want.image_id)}"
    return f"container is {old.status}"


def pin_notes(spec, want, memory):
    if not want.pinned:
        return []
    return [f"{spec.label} is pinned to {short_id(want.image_id)} by a rollback, until {spec.image} points at "
            f"another image (or `dockerup retry {spec.label}`)"]


def short_id(image_id):
    return image_id.split(":", 1)[-1][:12]


def clock(seconds):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def plan_image_cleanup(declared, state, leaving, memory, config, ours, held=()):
    """Images this scope used that nothing will use after this run: no remaining
    container, no declared spec, no pin, no image an update.rolling hold keeps
    (`held`). Untagged images someone else left are removed only with exclusive=true."""
    referenced = {c.image_id for c in state.containers if c.id not in leaving}
    referenced |= {state.images.resolve(spec.image) for spec in declared.specs}
    referenced |= {pin.image_id for pin in memory.pins.values()} | set(held)
    used = (memory.images | {c.image_id for c in ours}) & state.images.ids
    candidates = used | (state.images.dangling if config.exclusive else set())
    actions = []
    for image_id in sorted(candidates - referenced):
        refs = tuple(state.images.refs_by_id.get(image_id) or [image_id])
        reason = ("untagged image nothing uses" if image_id in state.images.dangling
                  else f"image {'dockerup' if not config.scope else 'scope ' + config.scope} used before; "
                       "nothing uses it now")
        actions.append(RemoveImage(image_id, refs, reason))
    return actions


# ============================================================================
# Executing actions
# ============================================================================
# The only place that changes the host. A replacement is a small transaction: the
# old container is kept (stopped and renamed aside, or still running when eager)
# until its successor has stayed up, and is put back if the successor fails. After
# that the old container stays aside, stopped, for the probation the planner watches.
# The executor also keeps the memory up to date: failed updates, replaced images.

TEMP_NEW, TEMP_OLD = ".dockerup-new-", ".dockerup-old-"


class ActionFailed(DockerupError):
    exit_code = EXIT_PROBLEMS

    def __init__(self, message, reason=None, cause=None):
        super().__init__(message)
        self.reason = reason or message  # short, for the memory of failed updates
        self.cause = cause  # the docker error behind it, if any

    @property
    def update_failed(self):
        """Whether the update itself failed, rather than the host under it: only
        then is the failure remembered and the update held back."""
        if isinstance(self.cause, (DaemonUnreachable, DockerTimeout)):
            return False
        return not any(marker in self.reason for marker in HOST_CONDITIONS)


class DependencyNotMet(ActionFailed):
    """A container this one depends on did not meet its dependsOn condition: not the
    update's fault, so nothing is remembered against it."""

    @property
    def update_failed(self):
        return False


# dependsOn condition -> what the container must do, for messages.
CONDITION_WORDS = {"START": "start", "HEALTHY": "become healthy", "COMPLETE": "exit", "SUCCESS": "exit with code 0"}


def condition_met(condition, state):
    """(met, why it never will be) for a dependsOn condition, given the docker inspect
    State of the container depended on (None: there is none)."""
    if state is None:
        return False, "does not exist"
    status, code = state.get("Status"), state.get("ExitCode")
    started = parse_docker_time(state.get("StartedAt")) > 0
    ended = started and status in ("exited", "dead")
    health = (state.get("Health") or {}).get("Status", "")
    if condition == "START":
        return started, ""
    if condition == "COMPLETE":
        return ended, ""
    if condition == "SUCCESS":
        succeeded = status == "exited" and code == 0
        return ended and succeeded, f"exited with code {code}" if ended and not succeeded else ""
    if health in ("healthy", "unhealthy"):
        return health == "healthy", "" if health == "healthy" else "is unhealthy"
    if ended:
        return False, f"exited with code {code}"
    return False, "has no health check" if status == "running" and not health else ""


# What docker says when the host, not the new container, is at fault: a port someone
# else holds, a full disk. The next run tries the update again.
HOST_CONDITIONS = ("address already in use", "port is already allocated", "no space left on device",
                   "was killed by signal")


class StopRequest:
    """Set by SIGTERM/SIGINT: finish the action in flight, start no other."""

    def __init__(self):
        self.event = threading.Event()
        self.exit_at_once = False  # while dockerup stops its own container

    def __bool__(self):
        return self.event.is_set()


@dataclass
class Undo:
    """What a stop-first replacement has done so far."""

    old: Container
    aside: str
    stopped: bool = False
    renamed: bool = False
    ran: bool = False
    new: str = ""  # name or id of the replacement, once docker run succeeded


class Executor:
    def __init__(self, docker, settle, stop=None, own_id=None, memory=None, now=time.time, remember=None):
        self.docker = docker
        self.settle = settle
        self.stop = stop if stop is not None else StopRequest()
        self.own_id = own_id
        self.memory = memory if memory is not None else Memory()
        self.now = now
        self.remember = remember or (lambda: None)  # saves the memory: a SIGKILL must not lose a failure
        self.stop_self_last = None
        self.removed_images = set()
        self.done = []  # the actions carried out
        self.handlers = {RemoveContainer: self.remove_action, CreateContainer: self.create,
                         StartContainer: self.start, RenameContainer: self.rename, UpdateContainer: self.update,
                         ReplaceContainer: self.replace, RollBack: self.roll_back, RemoveImage: self.remove_image}

    def execute(self, actions):
        """Run every action; one failing does not stop the others, except those
        of specs that depend on it. Returns Problems."""
        problems, failed = [], set()
        for index, action in enumerate(actions):
            if self.stop:
                problems.append(Problem("dockerup", f"stopped by a signal; {len(actions) - index} actions left for the next run"))
                break
            spec = getattr(action, "spec", None)
            blocked = blocked_reason(spec, failed, planning=False) if spec else ""
            if blocked:
                problems.append(spec.problem("", blocked))
                failed.add(spec.name)
                continue
            try:
                problem = self.handlers[type(action)](action)
                self.done.append(action)
            except DaemonUnreachable:
                raise
            except DockerupError as e:
                problem = spec.problem("", str(e)) if spec else Problem("dockerup", str(e))
                if spec:
                    failed.add(spec.name)
            if problem:
                problems.append(problem)
        if self.stop_self_last and not self.stop:
            self.stop_own_container(self.stop_self_last)
        return problems

    def remove_action(self, action):
        self.remove(action.container, action.container.name, action.reason)

    def remove(self, container, ref, reason):
        """Stop and remove a container, never its volumes: data outlives containers."""
        if container.id == self.own_id:
            self.stop_self_last = ref
            return
        if container.alive:
            self.docker.change("stop", ref, reason=reason)
        self.docker.change("rm", ref, reason=reason)

    def create(self, action):
        spec, labels = action.spec, action.want.labels
        self.await_dependencies(action)
        try:
            self.docker.change(*run_argv(spec, labels=labels, image=action.want.image),
                               reason=f"{action.reason} ({spec.label})", env=run_environment(spec))
        except DockerError as e:
            self.remove_half_created(labels)
            raise ActionFailed(f"cannot create {spec.label}: {e.detail}")
        self.send_signals(spec)

    def start(self, action):
        self.await_dependencies(action)
        self.docker.change("start", action.container.name, reason=f"{action.reason} ({action.spec.label})")

    def rename(self, action):
        self.docker.change("rename", action.container.name, action.spec.name, reason=action.reason)

    def update(self, action):
        self.docker.change("update", *action.flags, action.container.name,
                           reason=f"{action.reason} ({action.spec.label})")

    def replace(self, action):
        spec, old = action.spec, action.old
        self.await_dependencies(action)  # before the old container stops: a timeout leaves it running
        if action.not_eager_because:
            log.info("%s: replacing without update.eager: %s", spec.label, action.not_eager_because)
        try:
            if action.eager:
                self.replace_eager(action)
            else:
                self.replace_stop_first(action)
        except ActionFailed as e:
            if not self.docker.dry_run and not self.stop and e.update_failed:  # a stop is not the update's fault
                self.memory.failures[spec.identity] = Failure(action.want.spec_hash, action.want.image_id or "",
                                                              action.want.image, self.now(), e.reason,
                                                              action.attempts)
                self.remember()
            raise
        if action.previous and not self.docker.dry_run:
            self.memory.previous[spec.identity] = action.previous
            self.remember()
        if action.keep_old:
            log.info("%s: keeping %s stopped until its replacement has run for the probation time",
                     spec.label, old.short)
        self.send_signals(spec)

    def replace_eager(self, action):
        """The replacement starts, and must stay up, before the old one stops."""
        spec, old, labels = action.spec, action.old, action.want.labels
        temporary = f"{spec.name}{TEMP_NEW}{labels[LABEL_HASH][-8:]}" if spec.name else None
        why = f"replace {spec.label}, eager: {action.reason}"
        try:
            new = self.docker.change(*run_argv(spec, name=temporary, labels=labels, image=action.want.image,
                                               carry=action.carry), reason=why, env=run_environment(spec)).strip()
        except DockerError as e:
            self.remove_half_created(labels)
            raise ActionFailed(f"replacement of {spec.label} did not start: {e.detail}; {old.short} keeps running",
                               reason=f"did not start: {e.detail}", cause=e)
        new = temporary or new
        try:
            self.wait_until_up(new, spec)
        except ActionFailed as e:
            self.docker.change("rm", "--force", "--volumes", new, reason=f"replacement of {spec.label} failed")
            raise ActionFailed(f"replacement of {spec.label} {e}; {old.short} keeps running", reason=str(e))
        if not spec.name:
            self.retire(old, old.name, why, action.keep_old)
            return
        retired = f"{spec.name}{TEMP_OLD}{old.id[:12]}"
        self.docker.change("rename", old.name, retired, reason=why)
        try:
            self.docker.change("rename", temporary, spec.name, reason=why)
        except DockerError as e:
            self.docker.change("rename", retired, old.name, reason=f"put {old.name} back")
            self.docker.change("rm", "--force", "--volumes", temporary, reason=f"replacement of {spec.label} failed")
            raise ActionFailed(f"cannot rename the replacement of {spec.label}: {e.detail}; {old.short} keeps running",
                               reason=f"cannot rename it: {e.detail}", cause=e)
        self.retire(old, retired, why, action.keep_old)

    def retire(self, old, ref, reason, keep):
        """The replaced container: stopped and kept for probation, or removed."""
        if keep:
            self.docker.change("stop", ref, reason=f"{reason}; kept for probation")
        else:
            self.remove(old, ref, reason)

    def replace_stop_first(self, action):
        """Stop the old container, keep it aside, and put it back as it was if
        the replacement does not come up."""
        spec, old, labels = action.spec, action.old, action.want.labels
        why = f"replace {spec.label}: {action.reason}"
        aside = f"{spec.name}{TEMP_OLD}{old.id[:12]}" if spec.name else old.name
        done = Undo(old, aside)
        try:
            if old.alive:
                self.docker.change("stop", old.name, reason=why)
                done.stopped = True
            if aside != old.name:
                self.docker.change("rename", old.name, aside, reason=f"keep {old.name} until its replacement is up")
                done.renamed = True
            done.ran = True
            output = self.docker.change(*run_argv(spec, labels=labels, image=action.want.image, carry=action.carry),
                                        reason=why, env=run_environment(spec)).strip()
            done.new = spec.name or output
            self.wait_until_up(done.new, spec)
        except DockerupError as e:
            detail = e.detail if isinstance(e, DockerError) else str(e)
            failures = self.undo(spec, done, labels)
            raise ActionFailed(f"replacement of {spec.label} failed: {detail}; "
                               + ("; ".join(failures) or f"put back {old.short} as it was"), reason=detail,
                               cause=e if isinstance(e, DockerError) else getattr(e, "cause", None))
        if not action.keep_old:
            self.docker.change("rm", aside, reason=why)

    def undo(self, spec, done, labels):
        """Undo a failed replace_stop_first step by step, each on its own so one
        failing does not prevent the others. Returns what could not be undone."""
        why, old = f"replacement of {spec.label} failed", done.old
        steps = []
        if done.ran and done.new:
            # --volumes: the failed replacement leaves no new volume behind; the carried
            # ones are mounted by name, which docker rm never removes.
            steps.append(lambda: self.docker.change("rm", "--force", "--volumes", done.new, reason=why))
        elif done.ran:
            steps.append(lambda: self.remove_half_created(labels))
        if done.renamed:
            steps.append(lambda: self.docker.change("rename", done.aside, old.name, reason=f"put {old.name} back"))
        if done.stopped:
            steps.append(lambda: self.docker.change("start", old.name, reason=f"put {old.name} back"))
        failures = []
        for step in steps:
            try:
                step()
            except DockerupError as e:
                failures.append(f"could not put back {old.short}: {e}")
        return failures

    def roll_back(self, action):
        """The replacement failed its probation: remove it, put the kept container back
        under its name and start it. The failure is remembered first, so that a run
        interrupted half-way finishes the rollback instead of trying the update again.
        The run says so (a problem: exit 1), unless the rollback was asked for."""
        spec, current, kept = action.spec, action.current, action.kept
        why = f"roll back {spec.label}: {action.reason}"
        if not self.docker.dry_run:
            self.memory.failures[spec.identity] = action.failure
            self.remember()
        self.docker.change("rm", "--force", "--volumes", current.id, reason=why)
        if spec.name and kept.name != spec.name:
            self.docker.change("rename", kept.name, spec.name, reason=why)
        self.docker.change("start", spec.name or kept.id, reason=why)
        self.send_signals(spec)
        if action.failure.manual:
            log.info("%s: rolled back to %s by hand", spec.label, kept.short)
            return None
        return spec.problem("", f"rolled back to {kept.short}: the update to {action.failure.image} failed "
                                f"({action.reason}); it is not tried again until the spec or the image changes"
                                + ("" if action.failure.manual else " or the back-off has passed")
                                + f" (dockerup retry {spec.label})")

    def remove_half_created(self, labels):
        """A failed `docker run` can leave a created, never started container."""
        if self.docker.dry_run:
            return
        leftovers = self.docker.read("ps", "--all", "--quiet", "--filter", f"label={LABEL_ID}={labels[LABEL_ID]}",
                                     "--filter", f"label={LABEL_HASH}={labels[LABEL_HASH]}",
                                     "--filter", "status=created").split()
        for container_id in leftovers:
            self.docker.change("rm", "--force", "--volumes", container_id, reason="left by the failed docker run")

    def wait_until_up(self, ref, spec):
        """The replacement must keep running for `settle` seconds or, with a
        healthCheck, become healthy within the time its settings allow. A one-shot
        container may instead exit 0."""
        if self.docker.dry_run:
            return
        check = spec.doc.get("healthCheck")
        wants_health = bool(check) and health_command(check) is not None
        limit = health_wait_limit(check, self.settle, self.docker.timeout) if wants_health else self.settle
        started = time.monotonic()
        while True:
            if self.stop:
                raise ActionFailed("was not given the time to prove itself: dockerup is stopping")
            state = json.loads(self.docker.read("inspect", "--type", "container", "--format", "{{json .State}}", ref))
            if state.get("Status") == "exited" and state.get("ExitCode") == 0 and spec.one_shot:
                return
            if state.get("Status") != "running":
                raise ActionFailed(f"{state.get('Status')} with exit code {state.get('ExitCode')}"
                                   f"{self.last_output(ref)}")
            health = state.get("Health") or {}
            if wants_health and health.get("Status") == "healthy":
                return
            if wants_health and health.get("Status") == "unhealthy":
                log_lines = health.get("Log") or [{}]
                raise ActionFailed(f"is unhealthy: {first_line(log_lines[-1].get('Output', '')) or 'health check failed'}")
            elapsed = time.monotonic() - started
            if elapsed >= limit:
                if wants_health:
                    raise ActionFailed(f"was not healthy within {limit:g} seconds")
                return
            time.sleep(min(0.25, limit - elapsed))

    def await_dependencies(self, action):
        """dependsOn: wait until each container the action's spec depends on meets its
        condition. Not meeting one in time fails the action; the update is not to blame."""
        for wait in action.awaits:
            if self.docker.dry_run:
                continue
            deadline, told = time.monotonic() + wait.timeout, False
            while True:
                if self.stop:
                    raise DependencyNotMet(f"stopped while waiting for {wait.container} (dependsOn {wait.condition})")
                try:
                    state = json.loads(self.docker.read("inspect", "--type", "container", "--format",
                                                        "{{json .State}}", wait.container))
                except DockerError:
                    state = None
                met, failure = condition_met(wait.condition, state)
                if met:
                    break
                if failure:
                    raise DependencyNotMet(f"{wait.container} {failure} (dependsOn {wait.condition})")
                if time.monotonic() >= deadline:
                    raise DependencyNotMet(f"{wait.container} did not {CONDITION_WORDS[wait.condition]} within "
                                           f"{wait.timeout:g} seconds (dependsOn {wait.condition}; its startTimeout)")
                if not told:
                    log.info("%s: waiting for %s to %s (dependsOn %s)", action.spec.label, wait.container,
                             CONDITION_WORDS[wait.condition], wait.condition)
                    told = True
                time.sleep(0.25)

    def last_output(self, ref):
        try:
            result = self.docker._run(("logs", "--tail", "5", ref), logging.DEBUG)
        except DockerupError:
            return ""
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        return f"; its last output: {lines[-1].strip()[:200]!r}" if lines else ""

    def send_signals(self, spec):
        for target in spec.doc.get("signal", []):
            try:
                self.docker.change("kill", "--signal", target["signal"], target["container"],
                                   reason=f"{spec.label} was updated")
            except DockerError as e:
                log.warning("%s: could not signal %s: %s", spec.label, target["container"], e.detail)

    def remove_image(self, action):
        try:
            self.docker.change("rmi", *action.refs, reason=action.reason)
            self.removed_images.add(action.image_id)
        except DockerError as e:
            if "No such image" in e.detail:
                self.removed_images.add(action.image_id)
            elif "conflict" in e.detail or "being used" in e.detail:
                log.debug("image %s is still in use: %s", short_id(action.image_id), e.detail)
            else:
                raise

    def stop_own_container(self, ref):
        """dockerup stops its own container last, after its replacement is in place;
        the SIGTERM this brings ends this process at once."""
        self.stop.exit_at_once = True
        self.docker.change("stop", ref, reason="dockerup's own container was replaced")


def health_wait_limit(check, settle, timeout):
    """How long docker may take to call a new container healthy or unhealthy."""
    interval, per_check = check.get("interval", 30), check.get("timeout", 30)
    limit = check.get("startPeriod", 0) + (interval + per_check) * check.get("retries", 3) + interval + settle
    return min(limit, timeout)


# ============================================================================
# Telling what is and what happened: status, the plan as JSON, metrics, notifications
# ============================================================================
# All of it is read from what the planner decided and the executor did; none of it
# changes the host or what a run converges. `dockerup status` is a plan without
# pulls and without execution.


def iso_time(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)) if seconds is not None else None


def owner_of(problem, specs):
    """The spec a Problem is about, or None (a file that is not valid, a name clash...)."""
    for spec in specs:
        if problem.where == spec.where and (not spec.path or problem.path == spec.path
                                            or problem.path.startswith((spec.path + ".", spec.path + "["))):
            return spec
    return None


def image_reference(container, images):
    """How to call a container's image: the reference it was created from, else a tag
    or digest of its image, else the image's short id."""
    refs = images.refs_by_id.get(container.image_id) or images.digests_by_id.get(container.image_id) or ()
    return container.image or (refs[0] if refs else short_id(container.image_id))


@dataclass(frozen=True)
class Hold:
    until: float  # None: until something changes
    reason: str


def held_back(identity, plan):
    """Why, and until when, the planner holds back an update of a spec, or None.
    update.rolling holds it until this host's turn, a remembered failure until its
    retry time. Every report reads holds through this function."""
    if identity in plan.held_until:
        return Hold(plan.held_until[identity], "update.rolling: this host's turn in the window comes then")
    if plan.outcomes.get(identity) != Outcome.HELD:
        return None
    failure = plan.memory.failures.get(identity)
    if failure:
        return Hold(failure.retry_at, f"the update to {failure.image} failed: {failure.reason}")
    return Hold(None, "update held back")


def update_available(spec, plan, images):
    """Whether a newer image than the one the spec's container runs is known and not
    applied: held back, pinned, failed, or a tag that moved without being applied."""
    identity = spec.identity
    if identity in plan.memory.failures or identity in plan.memory.pins or held_back(identity, plan):
        return True
    current = plan.current.get(identity)
    tag_image_id = images.resolve(spec.image)
    return bool(current and tag_image_id and current.image_id != tag_image_id
                and plan.outcomes.get(identity) not in (Outcome.REPLACE, Outcome.CREATE, Outcome.ROLL_BACK))


# ---- dockerup status ------------------------------------------------------------------


def cached_user_data(cache_dir, memo=None):
    """The last good user-data from the cache: status makes no network call."""
    data = read_cache_bytes(cache_dir, USER_DATA_CACHE)
    if data is None:
        return UserData([], [], [], False)
    specs, problems, documents = parse_user_data(data, "user-data", memo)
    return UserData(specs, problems, documents, not problems)


def read_status(config, docker, now=None):
    """What runs, what failed and what waits, as a JSON-ready dict: the plan a run
    would make without pulling (images missing locally are assumed pulled), read
    with the memory. Three docker calls, as a run with nothing to do; changes nothing."""
    now = time.time() if now is None else now
    memo = SchemaMemo(config.cache)
    declared = load_declared(config, cached_user_data(config.cache, memo) if config.aws else None, memo)
    memory = read_memory(config.cache, config.scope)
    state = read_state(docker)
    missing = [image for image, why in plan_pulls(declared.specs, state.images, config).items()
               if why == "image missing locally"]
    plan = plan_changes(declared, state, memory, config, now=now, own_id=own_container_id(), pending_pulls=missing,
                        host_identity=host_identity())
    ours = [c for c in state.containers if c.managed and c.scope == config.scope]
    groups, _ = group_containers(declared, ours)
    problems = declared.problems + plan.problems
    pending = {}  # identity of a declared spec, or id of another container -> its actions
    for action in plan.actions:
        spec, container = getattr(action, "spec", None), getattr(action, "container", None)
        key = spec.identity if spec else container and (
            container.identity if container.identity in plan.outcomes else container.id)
        pending.setdefault(key, []).append({"action": ACTION_KINDS[type(action)], "reason": action.reason})
    rows = [spec_status(spec, groups.get(spec.identity, []), plan, state.images, config,
                        pending.get(spec.identity, []), [p for p in problems if owner_of(p, [spec])])
            for spec in declared.specs]
    shown = {row["containerId"] for row in rows}
    for container in sorted(ours + [c for c in state.containers if c.id in pending], key=lambda c: c.name):
        if container.id not in shown and container.identity not in plan.outcomes:
            row = container_status(container, state.images, pending.get(container.id, []))
            row["warnings"] = [note for note in plan.notes if container.short in note]
            rows.append(row)
            shown.add(container.id)
    converged = (not problems and not any(not isinstance(a, RemoveImage) for a in plan.actions)
                 and all(o in (Outcome.KEEP, Outcome.FINISHED, Outcome.PROBATION) for o in plan.outcomes.values()))
    last = memory.last_run
    return {
        "scope": config.scope, "converged": converged, "containers": rows,
        "problems": [problem_json(p) for p in problems if not owner_of(p, declared.specs)],
        "lastRun": {"at": iso_time(last.at), "duration": round(last.duration, 3), "exitCode": last.exit_code,
                    "summary": last.summary} if last else None,
    }


def problem_json(problem):
    return {"file": problem.where, "path": problem.path, "message": problem.message}


def spec_status(spec, group, plan, images, config, pending, problems):
    """The status of one declared spec and of the container that stands for it."""
    identity, outcome = spec.identity, plan.outcomes.get(spec.identity)
    container = plan.current.get(identity) or min(
        group, key=lambda c: (not c.alive, bool(spec.name) and c.name != spec.name, -c.created), default=None)
    failure, pin, hold = plan.memory.failures.get(identity), plan.memory.pins.get(identity), held_back(identity, plan)
    tag_image_id = images.resolve(spec.image)
    kept = [c for c in group if container and c.id != container.id and not c.alive]
    row = container_status(container, images, pending, outcome_name(outcome))
    row.update({
        "name": spec.name or (container.name if container else identity), "identity": identity, "declared": True,
        "image": spec.image, "source": spec.source, "file": spec.where, "path": spec.path or None,
        "failedUpdate": {
            "image": failure.image, "imageId": failure.image_id, "at": iso_time(failure.at), "reason": failure.reason,
            "attempts": failure.attempts, "nextRetry": iso_time(failure.retry_at)} if failure else None,
        "probation": {"until": iso_time(container.created + config.probation),
                      "kept": kept[0].name if kept else None} if outcome == Outcome.PROBATION else None,
        "pinned": {"imageId": pin.image_id, "ref": pin.ref} if pin else None,
        "held": {"until": iso_time(hold.until), "reason": hold.reason} if hold else None,
        "newerImage": {"imageId": tag_image_id} if container and tag_image_id and tag_image_id != container.image_id
        else None,
        "problems": [str(p) for p in problems],
        "warnings": [note for note in plan.notes if note.startswith(f"{spec.label}: ")],
    })
    return row


def container_status(container, images, pending, next_step=None):
    """A status row of a container; for a container no spec declares, the whole row.
    `container` is None for a declared spec that has none."""
    return {
        "name": container.name if container else None, "identity": container.identity if container else None,
        "declared": False, "state": container.status if container else "missing",
        "exitCode": container.exit_code if container and container.status in ("exited", "dead") else None,
        "health": container.health or None if container else None,
        "image": image_reference(container, images) if container else None,
        "imageId": container.image_id if container else None, "containerId": container.id if container else None,
        "startedAt": iso_time(container.started_at) if container and container.started_at else None,
        "source": container.labels.get(LABEL_SOURCE) if container and container.managed else None,
        "file": None, "path": None,
        "next": next_step or ("remove" if pending else "keep"), "pending": pending,
        "failedUpdate": None, "probation": None, "pinned": None, "held": None, "newerImage": None, "problems": [],
        "warnings": [],
    }


def outcome_name(outcome):
    return outcome.name.lower().replace("_", "") if outcome else None  # ROLL_BACK: "rollback", as its action


STATUS_COLUMNS = (("NAME", "name"), ("STATE", "state"), ("HEALTH", "health"), ("IMAGE", "image"),
                  ("IMAGE ID", "imageId"), ("SOURCE", "file"))


def status_text(status):
    """An aligned table, one container a line, what is going on with it last."""
    def cell(row, key):
        value = row.get(key)
        if key == "state" and row.get("exitCode") is not None:
            return f"{value} ({row['exitCode']})"
        if key == "imageId":
            return short_id(value) if value else "-"
        if key == "file":
            return " ".join(filter(None, (os.path.basename(value), row["path"]))) if value else "(not declared)"
        return value or "-"

    table = [[title for title, _ in STATUS_COLUMNS] + ["NOTES"]]
    table += [[cell(row, key) for _, key in STATUS_COLUMNS] + ["; ".join(status_notes(row)) or "-"]
              for row in status["containers"]]
    widths = [max(len(line[i]) for line in table) for i in range(len(STATUS_COLUMNS))]
    lines = ["  ".join(word.ljust(width) for word, width in zip(line, widths)) + "  " + line[-1] for line in table]
    lines += ["problem: " + ": ".join(filter(None, (p["file"], p["path"], p["message"]))) for p in status["problems"]]
    last = status["lastRun"]
    lines.append(f"last run: {last['at']}, {last['duration']:g}s, exit {last['exitCode']}: {last['summary']}" if last
                 else "last run: none recorded")
    return "\n".join(one_line(line) for line in lines) + "\n"


def status_notes(row):
    """What is going on with a container, in words."""
    notes = []
    if row["failedUpdate"]:
        failure = row["failedUpdate"]
        notes.append(f"update to {failure['image']} failed at {failure['at']} ({failure['reason']}); "
                     + (f"next try at {failure['nextRetry']}" if failure["nextRetry"]
                        else "tried again when it changes"))
    if row["held"] and not row["failedUpdate"]:
        notes.append(f"update held back until {row['held']['until'] or 'something changes'}: {row['held']['reason']}")
    if row["probation"]:
        kept = f" ({row['probation']['kept']} kept)" if row["probation"]["kept"] else ""
        notes.append(f"on probation until {row['probation']['until']}{kept}")
    if row["pinned"]:
        notes.append(f"pinned to {short_id(row['pinned']['imageId'])} by a rollback")
    if row["newerImage"] and not (row["pinned"] or row["failedUpdate"]):
        notes.append(f"newer image {short_id(row['newerImage']['imageId'])} present locally")
    notes += row["problems"] + (row["warnings"] if not row["declared"] else [])
    if row["pending"] and not row["problems"]:
        notes.append("next run: " + ", ".join(f"{p['action']} ({p['reason']})" for p in row["pending"]))
    return notes


def show_status(config, docker):
    """`dockerup status`: exit 0 when every declared container is as declared."""
    status = read_status(config, docker)
    if config.format == "json":
        print(json.dumps(status, indent=2))
    else:
        sys.stdout.write(status_text(status))
    return EXIT_OK if status["converged"] else EXIT_PROBLEMS


# ---- The plan as JSON ------------------------------------------------------------------


def describe_plan(pulls, plan, state, executor, problems):
    """--dry-run --format json: every action in execution order, pulls first, with the
    docker commands a run would execute for it (env values masked). The executor
    runs each action on a dry-run Docker that keeps a journal instead of printing."""
    journal, prefix = executor.docker.journal, executor.docker.prefix
    actions = [{"action": PULL, "container": None, "image": image, "imageId": None, "reason": why,
                "commands": [argv for argv in journal if argv == prefix + ["pull", image]]}
               for image, why in pulls.items()]
    for action in plan.actions:
        mark = len(journal)
        executor.execute([action])
        container, image, image_id = action_subject(action, state.images)
        actions.append({"action": ACTION_KINDS[type(action)], "container": container, "image": image,
                        "imageId": image_id, "reason": action.reason, "commands": journal[mark:]})
    return {"actions": actions, "problems": [problem_json(p) for p in problems], "warnings": plan.notes}


def action_subject(action, images):
    """(container name or None, image reference, image id or None) of an action."""
    if isinstance(action, (CreateContainer, ReplaceContainer)):
        name = action.spec.name or (action.old.name if isinstance(action, ReplaceContainer) else None)
        return name, action.want.image, action.want.image_id
    if isinstance(action, RemoveImage):
        return None, action.refs[0], action.image_id
    container = action.kept if isinstance(action, RollBack) else action.container
    return container.name, image_reference(container, images), container.image_id


# ---- Notifications ------------------------------------------------------------------------

NOTIFY_DEADLINE = 5.0  # seconds for every URL together
EVENT_WORDS = {"created": "created", "updated": "updated", "updated-in-place": "updated in place",
               "removed": "removed", "update-failed": "update failed", "rolled-back": "rolled back",
               "update-held": "update held back", "problem": "problem"}


@dataclass(frozen=True)
class Event:
    event: str  # a key of EVENT_WORDS
    container: str  # its name (an unnamed spec's identity), or None
    image: str
    image_id: str
    reason: str

    def to_json(self):
        return {"event": self.event, "container": self.container, "image": self.image, "imageId": self.image_id,
                "reason": self.reason}

    def text(self):
        subject = f"{self.container} " if self.container else ""
        image = f" ({self.image})" if self.image else ""
        return one_line(f"{subject}{EVENT_WORDS[self.event]}{image}: {self.reason}")


def action_event(action, declared, images):
    """The event of an action carried out, or None for housekeeping (a start, a rename,
    the removal of a leftover or of an image)."""
    name, image, image_id = action_subject(action, images)
    label = action.spec.label if hasattr(action, "spec") else name
    kind = {CreateContainer: "created", ReplaceContainer: "updated", UpdateContainer: "updated-in-place",
            RollBack: "rolled-back"}.get(type(action))
    if isinstance(action, ReplaceContainer) and action.want.pinned and action.old.image_id != action.want.image_id:
        kind = "rolled-back"  # to the image a rollback pinned
    if isinstance(action, RemoveContainer):
        declared_identities = {spec.identity for spec in declared.specs}
        kind = "removed" if action.container.identity not in declared_identities else None
    return Event(kind, label, image, image_id, action.reason) if kind else None


def event_key(*parts):
    return short_hash(list(parts), 16)


def run_events(declared, plan, done, problems, images, told):
    """What to tell about a run: an event for each action carried out, and one for
    each standing condition (a remembered failure, a held update, a problem) the
    first time it is seen. Returns (events, keys of the standing conditions): the
    caller remembers those as `told` for the next run."""
    events = [e for e in (action_event(action, declared, images) for action in done) if e]
    rolled_back = {action.spec.identity for action in done if isinstance(action, RollBack)}
    standing = {}
    for identity, failure in sorted(plan.memory.failures.items()):
        label = next((s.label for s in declared.specs if s.identity == identity), identity)
        event = Event("update-failed", label, failure.image, failure.image_id or None, failure.reason)
        standing[event_key("update-failed", identity, failure.spec_hash, failure.image_id)] = (
            None if identity in rolled_back else event)  # the rollback said it
    for spec in declared.specs:
        hold = held_back(spec.identity, plan)
        if hold and spec.identity not in plan.memory.failures:
            standing[event_key("update-held", spec.identity, hold.until, hold.reason)] = Event(
                "update-held", spec.label, spec.image, images.resolve(spec.image), hold.reason)
    failed = rolled_back | set(plan.memory.failures)
    for problem in problems:
        owner = owner_of(problem, declared.specs)
        if owner and owner.identity in failed:
            continue  # an update that failed, told as such
        standing[event_key("problem", str(problem))] = Event("problem", owner.label if owner else None, None, None,
                                                             str(problem))
    events += [event for key, event in standing.items() if event and key not in told]
    return events, set(standing)


def notification(events, scope=""):
    """The JSON body posted to each notify URL: Slack and Mattermost show its `text`."""
    import socket

    host = socket.gethostname()
    where = f"{host} ({scope})" if scope else host
    return {"host": host, "scope": scope, "time": iso_time(time.time()), "events": [e.to_json() for e in events],
            "text": "\n".join(f"{where}: {event.text()}" for event in events)}


def send_notifications(urls, body, deadline=NOTIFY_DEADLINE):
    """POST the body to every URL side by side, all within `deadline` seconds; a URL
    that fails or is too slow costs one warning line, never the run."""
    import urllib.request

    data = json.dumps(body).encode()
    outcomes = {}

    def post(url):
        request = urllib.request.Request(url, data, {"Content-Type": "application/json",
                                                     "User-Agent": f"dockerup/{__version__}"})
        try:
            with urllib.request.urlopen(request, timeout=deadline) as response:
                response.read(65536)
            outcomes[url] = None
        except urllib.error.HTTPError as e:
            outcomes[url] = f"HTTP {e.code}"
        except Exception as e:  # whatever else goes wrong, it is this URL's warning, not a traceback
            reason = first_line(str(getattr(e, "reason", "") or e)) or type(e).__name__
            outcomes[url] = reason.replace(url, redact_url(url))

    threads = [threading.Thread(target=post, args=(url,), daemon=True) for url in urls]
    ends = time.monotonic() + deadline
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, ends - time.monotonic()))
    failed = [f"{redact_url(url)}: {outcomes.get(url, f'no answer within {deadline:g}s')}"
              for url in urls if outcomes.get(url, "") is not None]
    if failed:
        log.warning("notify: %s of %s not delivered: %s", plural(len(failed), "notification"), len(urls),
                    "; ".join(failed))


# ---- Prometheus metrics ----------------------------------------------------------------------

RUN_RESULTS = {EXIT_OK: "converged", EXIT_PROBLEMS: "problems"}  # any other exit code: "failed"

METRICS = {  # name -> (type, help)
    "dockerup_last_run_timestamp_seconds": ("gauge", "When the last dockerup run ended, in seconds since the epoch."),
    "dockerup_last_run_success": ("gauge", "1 if the last run converged every container, else 0."),
    "dockerup_last_run_duration_seconds": ("gauge", "How long the last run took."),
    "dockerup_last_run_exit_code": ("gauge", "The exit code of the last run."),
    "dockerup_runs_total": ("counter", "Runs, by result: converged, problems or failed."),
    "dockerup_actions_total": ("counter", "Actions carried out (pulls included), by kind."),
    "dockerup_container_running": ("gauge", "1 if the declared container is running, else 0."),
    "dockerup_update_failed": ("gauge", "1 if a failed update of the container is remembered, else 0."),
    "dockerup_update_available": ("gauge", "1 if a newer image is known but not applied (held back, pinned, "
                                           "failed or not pulled), else 0."),
}


def metrics_text(memory, scope, containers=()):
    """The Prometheus text exposition of the memory's last run and counters, and of
    `containers`: (label, running, update failed, update available) each."""
    extra = {"scope": scope} if scope else {}
    last = memory.last_run
    samples = {name: [] for name in METRICS}
    if last:
        samples["dockerup_last_run_timestamp_seconds"].append(({}, round(last.at, 3)))
        samples["dockerup_last_run_success"].append(({}, int(last.exit_code == EXIT_OK)))
        samples["dockerup_last_run_duration_seconds"].append(({}, round(last.duration, 3)))
        samples["dockerup_last_run_exit_code"].append(({}, last.exit_code))
    samples["dockerup_runs_total"] = [({"result": r}, n) for r, n in sorted(memory.runs_total.items())]
    samples["dockerup_actions_total"] = [({"action": a}, n) for a, n in sorted(memory.actions_total.items())]
    for label, running, failed, available in containers:
        samples["dockerup_container_running"].append(({"name": label}, int(running)))
        samples["dockerup_update_failed"].append(({"name": label}, int(failed)))
        samples["dockerup_update_available"].append(({"name": label}, int(available)))
    lines = []
    for name, (kind, text) in METRICS.items():
        if not samples[name]:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in samples[name]:
            labels = {**labels, **extra}
            body = ",".join(f'{key}="{escape_label(value)}"' for key, value in labels.items())
            lines.append(f"{name}{{{body}}} {value}" if body else f"{name} {value}")
    return "\n".join(lines) + "\n"


def escape_label(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def container_metrics(declared, plan, images, running):
    """(label, running, update failed, update available) of each declared spec;
    `running` is the set of identities with a running container."""
    return [(spec.label, spec.identity in running, spec.identity in plan.memory.failures,
             update_available(spec, plan, images)) for spec in declared.specs]


def read_running(docker, scope):
    """The identities of this scope's running containers, in one docker call."""
    listing = docker.read("ps", "--no-trunc", "--filter", f"label={LABEL_ID}", "--filter", "status=running",
                          "--format", f'{{{{.Label "{LABEL_ID}"}}}}\t{{{{.Label "{LABEL_SCOPE}"}}}}')
    return {identity for identity, _, own in (line.partition("\t") for line in listing.splitlines()) if own == scope}


# ---- After a run -----------------------------------------------------------------------------


@dataclass
class RunReport:
    """What a run leaves for its metrics and notifications."""

    exit_code: int
    memory: Memory  # as the run saved it
    events: list = field(default_factory=list)  # Events to notify
    declared: Declared = None  # None when the run failed before it could plan
    plan: Plan = None
    state: HostState = None
    changed: bool = False  # container actions were carried out
    error: BaseException = None  # what ended the run, raised again once told


def record_run(memory, started, exit_code, summary, counts=()):
    """The run's end, result and actions, in the memory (metrics counters)."""
    now = time.time()
    memory.last_run = LastRun(now, max(0.0, now - started), exit_code, summary)
    result = RUN_RESULTS.get(exit_code, "failed")
    memory.runs_total[result] = memory.runs_total.get(result, 0) + 1
    for kind in counts:
        memory.actions_total[kind] = memory.actions_total.get(kind, 0) + 1


def publish(config, docker, report):
    """The metrics file and the notifications of a run; neither can fail it."""
    if config.metrics:
        containers = ()
        if report.plan is not None:
            ours = [c for c in report.state.containers if c.managed and c.scope == config.scope]
            running = {c.identity for c in ours if c.status == "running"}
            try:
                if report.changed:
                    running = read_running(docker, config.scope)
                containers = container_metrics(report.declared, report.plan, report.state.images, running)
            except DockerupError as e:
                log.warning("metrics: cannot read which containers run: %s", e)
        write_file_atomically(config.metrics, metrics_text(report.memory, config.scope, containers).encode(),
                              mode=0o644, what="the metrics")  # the collector usually runs as another user
    if config.notify and report.events:
        send_notifications(config.notify, notification(report.events, config.scope))


# ============================================================================
# Command line
# ============================================================================

PULL_CONCURRENCY = 4


def pull_images(docker, pulls, stop):
    """Pull side by side through a small pool. Returns (errors by normalized
    reference, whether any image changed)."""

    def pull(image):
        if stop:
            return image, "not pulled: stopping"
        try:
            output = docker.change("pull", image, reason=pulls[image])
        except DockerupError as e:
            return image, getattr(e, "detail", str(e))
        return image, "changed" if "Downloaded newer image" in output else None

    errors, changed = {}, False
    if not pulls:
        return errors, changed
    from concurrent.futures import ThreadPoolExecutor  # a no-op run without pulls needs none

    with ThreadPoolExecutor(max_workers=min(PULL_CONCURRENCY, len(pulls))) as pool:
        for image, outcome in pool.map(pull, pulls):
            if outcome == "changed":
                changed = True
            elif outcome:
                errors[normalize_image_ref(image)] = outcome
                if pulls[image] != "image missing locally":
                    log.warning("pull of %s failed; keeping the local image: %s", image, outcome)
    return errors, changed


def converge(config, docker, stop, request=None, fetch=True):
    """One sync of the host with its declarations. `request` is what `dockerup retry`
    or `dockerup rollback` asks of this run. Without `fetch` (a server's sync after a
    change of its spec files) neither the registry nor the metadata service is asked:
    only missing images are pulled, and user-data is the last one read. Returns a
    RunReport."""
    started, started_at = time.monotonic(), time.time()
    memo = SchemaMemo(config.cache)
    if not fetch:
        config = replace(config, pull=False)
    user_data = None
    if config.aws:
        endpoint = metadata_endpoint()
        if endpoint is None:
            log.warning("aws=true, but AWS_EC2_METADATA_DISABLED=true: EC2 user-data is not read")
            # Not looking is not a 404: what user-data declared is left as it is.
            user_data = UserData([], [], [], False)
        elif not fetch:  # the last good user-data; the service was not asked, so none of its containers goes
            user_data = replace(cached_user_data(config.cache, memo), problems=[], complete=False)
        else:
            user_data = read_user_data(config.cache, endpoint, memo, remember=not config.dry_run)
    declared = load_declared(config, user_data, memo)
    remembered = read_memory(config.cache, config.scope)
    memory = copy.deepcopy(remembered)
    request_problems = request.apply(memory, declared) if request else []
    state = read_state(docker)
    pulls = plan_pulls(declared.specs, state.images, config, memory)
    pull_errors, images_changed = pull_images(docker, pulls, stop)
    if images_changed:
        state = HostState(state.containers, read_images(docker))
    own_id = own_container_id()
    plan = plan_changes(declared, state, memory, config, now=time.time(), own_id=own_id,
                        pending_pulls=pulls if config.dry_run else (), pull_errors=pull_errors,
                        host_identity=host_identity())
    for note in plan.notes:
        log.warning("%s", note)

    def remember():
        if not config.dry_run:
            save_memory(config.cache, config.scope, plan.memory)

    executor = Executor(docker, config.settle, stop, own_id, plan.memory, remember=remember)
    problems = declared.problems + request_problems + plan.problems
    if docker.journal is not None:
        print(json.dumps(describe_plan(pulls, plan, state, executor, problems), indent=2))
    else:
        problems += executor.execute(plan.actions)
    for problem in problems:
        log.error("%s", problem)
    changes = sum(1 for a in plan.actions if not isinstance(a, RemoveImage))
    exit_code = EXIT_PROBLEMS if problems else EXIT_OK
    summary = (f"{'dry run' if config.dry_run else 'converged' if not problems else 'ran'} in "
               f"{time.monotonic() - started:.2f}s: {len(declared.specs)} declared, {len(plan.kept)} unchanged, "
               f"{changes} container actions, {len(executor.removed_images)} images removed, {len(problems)} problems")
    report = RunReport(exit_code, plan.memory, declared=declared, plan=plan, state=state,
                       changed=any(not isinstance(a, RemoveImage) for a in executor.done))
    if not config.dry_run:
        memo.save()
        plan.memory.images = images_used(plan.memory.images, state, declared, config.scope, executor.removed_images)
        if config.notify:
            report.events, plan.memory.notified = run_events(declared, plan, executor.done, problems, state.images,
                                                             plan.memory.notified)
        pulled = [PULL] * (len(pulls) - len(pull_errors))
        record_run(plan.memory, started_at, exit_code, summary, pulled + [ACTION_KINDS[type(a)] for a in executor.done])
        save_memory(config.cache, config.scope, plan.memory, before=remembered)
    log.info("%s", summary)
    return report


def images_used(record, state, declared, scope, removed):
    """The images this scope's containers and specs use, so that cleanup can tell them
    apart from images someone else put on the host."""
    record = set(record) | {c.image_id for c in state.containers if c.managed and c.scope == scope}
    record |= {state.images.resolve(spec.image) for spec in declared.specs}
    return (record & state.images.ids) - set(removed)


@dataclass
class Request:
    """What `dockerup retry` or `dockerup rollback` asks of a run, by container name
    (or identity, for an unnamed spec); retry without names means every container."""

    kind: str  # "retry" or "rollback"
    names: list

    def apply(self, memory, declared):
        """Edit the memory the run plans with. Returns Problems for unknown names."""
        known = {spec.label: spec.identity for spec in declared.specs}
        known.update({spec.identity: spec.identity for spec in declared.specs})
        problems = [Problem(name, "no declared container has this name") for name in self.names if name not in known]
        identities = [known[name] for name in self.names if name in known]
        if self.kind == "rollback":
            memory.rollbacks |= set(identities)
            return problems
        for identity in identities or list(memory.failures.keys() | memory.pins.keys()):
            failure, pin = memory.failures.pop(identity, None), memory.pins.pop(identity, None)
            if failure:
                log.info("%s: forgetting that the update to %s failed at %s (%s)", identity, failure.image,
                         clock(failure.at), failure.reason)
            if pin:
                log.info("%s: lifting the pin to %s from a rollback", identity, short_id(pin.image_id))
        return problems


def converge_locked(config, docker, stop, request=None, fetch=True):
    """A run under the host lock, then its metrics and notifications. Returns the exit code."""
    fd = host_lock(config.cache)
    try:
        report = converge_recorded(config, docker, stop, request, fetch)
    finally:
        os.close(fd)
    publish(config, docker, report)
    if report.error is not None:
        raise report.error
    return report.exit_code


def converge_recorded(config, docker, stop, request=None, fetch=True):
    """converge(); a run that ends in an error (the engine unreachable, a bug) is
    recorded as a failed run, so that the metrics and status show it."""
    started = time.time()
    try:
        return converge(config, docker, stop, request, fetch)
    except Exception as e:  # raised again by converge_locked once the metrics are written
        exit_code = e.exit_code if isinstance(e, DockerupError) else EXIT_FATAL
        message = str(e) if isinstance(e, DockerupError) else f"internal error: {type(e).__name__}: {e}"
        memory = read_memory(config.cache, config.scope)
        events = []
        if config.notify:
            key = event_key("problem", message)
            events = [] if key in memory.notified else [Event("problem", None, None, None, one_line(message))]
            memory.notified.add(key)
        record_run(memory, started, exit_code, one_line(f"failed after {time.time() - started:.2f}s: {message}"))
        save_memory(config.cache, config.scope, memory)
        return RunReport(exit_code, memory, events, error=e)


# ---- Serving ---------------------------------------------------------------------
# A server syncs fully (registry pulls, user-data) every `interval` seconds and on
# SIGHUP. In between it looks at its configuration's files once a WATCH_PERIOD, which
# costs no docker call, and syncs at once when they change.

WATCH_PERIOD = 1.0


def file_signature(path):
    """What any write, replacement or removal of a file changes. The change time
    too: `cp -p`, tar and `rsync -t` keep the modification time."""
    try:
        found = os.stat(path)
    except OSError as e:
        return describe_os_error(e)
    return found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino


@dataclass(frozen=True)
class Watched:
    """A server's view of its configuration between syncs."""

    config_file: object  # file_signature of the configuration file
    spec_files: object  # ((name, file_signature), ...) of confdir's *.json, or why it cannot be read


def look_at_configuration(config_file, confdir):
    try:
        names = sorted(name for name in os.listdir(confdir) if name.endswith(".json") and not name.startswith("."))
    except OSError as e:
        return Watched(config_file and file_signature(config_file), describe_os_error(e))
    return Watched(config_file and file_signature(config_file),
                   tuple((name, file_signature(os.path.join(confdir, name))) for name in names))


def describe_change(before, after):
    if isinstance(before.spec_files, str) or isinstance(after.spec_files, str):
        return "the container directory changed"
    old, new = dict(before.spec_files), dict(after.spec_files)
    names = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"{', '.join(names[:3])}{more} changed"


def reconfigure(config, docker, source):
    """The configuration after its file changed, read as at start (options given on
    the command line still win): (config, docker, whether it differs). A file with a
    mistake, such as one half saved, leaves the configuration in use."""
    try:
        new = source.load()
    except DockerupError as e:
        log.error("%s; keeping the configuration in use", e)
        return config, docker, False
    changed = [key for key in CONFIG_KEYS if getattr(new, key) != getattr(config, key)]
    if not changed:
        return config, docker, False
    log.info("%s: configuration changed (%s): a full sync with it now", source.path, ", ".join(changed))
    if (new.remote, new.timeout) != (config.remote, config.timeout):
        docker = Docker(new.remote, new.timeout, new.dry_run, new.show_secrets,
                        journal=[] if docker.journal is not None else None)
    return new, docker, True


def sync_once(config, docker, stop, fetch):
    """One sync of a server; no error ends the server. Returns the LockHeld of a
    sync that could not run because another run held the lock."""
    try:
        converge_locked(config, docker, stop, fetch=fetch)
    except LockHeld as e:
        return e
    except MissingPackage:  # no later sync would do better
        raise
    except DockerupError as e:
        log.error("%s", e)
    except Exception as e:  # a bug must not stop the host being managed
        log.error("internal error in this sync: %s: %s", type(e).__name__, e, exc_info=config.verbose)
    return None


def serve(config, docker, stop, sync_now=None, source=None):
    """Sync until SIGTERM/SIGINT: fully every interval seconds and when `sync_now` is
    set (SIGHUP); a change of the spec files without pulls within a WATCH_PERIOD; a
    change of the configuration file (`source`, a ConfigSource) fully, with the
    configuration read again."""
    sync_now = sync_now if sync_now is not None else threading.Event()
    config_file = source.path if source else None
    log.info("dockerup %s serving: a full sync every %gs and on SIGHUP; changed spec files synced at once",
             __version__, config.interval)
    seen, last_full, waiting_for_lock = None, None, False
    while not stop:
        files = look_at_configuration(config_file, config.confdir)
        if source and seen and files.config_file != seen.config_file:
            config, docker, changed = reconfigure(config, docker, source)
            files = look_at_configuration(config_file, config.confdir)
            seen = replace(seen, config_file=files.config_file)  # read: only changed spec files need a sync
            last_full = None if changed else last_full
        due = None if last_full is None else last_full + config.interval - time.monotonic()
        full = due is None or due <= 0 or sync_now.is_set()
        if not full and files == seen:
            stop.event.wait(min(WATCH_PERIOD, due))
            continue
        if sync_now.is_set():
            log.info("SIGHUP: a full sync now")
            sync_now.clear()
        elif not full and not waiting_for_lock:
            log.info("%s: syncing now, without pulls", describe_change(seen, files))
        locked = sync_once(config, docker, stop, fetch=full)
        if locked and not full:
            if not waiting_for_lock:
                log.warning("%s; trying again in %gs", locked, WATCH_PERIOD)
            waiting_for_lock = True
            stop.event.wait(WATCH_PERIOD)
            continue
        if locked:
            log.warning("%s; trying again in %gs", locked, config.interval)
        seen, waiting_for_lock = files, False
        if full:
            last_full = time.monotonic()
    log.info("stopping on signal")
    return EXIT_OK


def install_signal_handlers(stop, sync_now=None):
    """SIGTERM and SIGINT stop dockerup after the action in flight; SIGHUP asks a
    server (which passes `sync_now`) for a full sync."""
    import signal

    def handle(signum, frame):
        if stop.exit_at_once:
            logging.shutdown()
            os._exit(EXIT_OK)
        if not stop:
            log.info("received %s: finishing the action in flight, then exiting", signal.Signals(signum).name)
        stop.event.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    if sync_now is not None:
        signal.signal(signal.SIGHUP, lambda signum, frame: sync_now.set())


def validate(config, user_data_file):
    """Check everything a run would read, without the engine. Problems go to
    standard output, one per line."""
    user_data = None
    if user_data_file:
        try:
            with open(user_data_file, "rb") as f:
                data = f.read(SPEC_FILE_LIMIT + 1)
        except OSError as e:
            raise DockerupError(f"{user_data_file}: cannot read: {describe_os_error(e)}")
        specs, problems, documents = parse_user_data(data, user_data_file, SchemaMemo())
        user_data = UserData(specs, problems, documents, not problems)
    declared = load_declared(config, user_data)
    for problem in declared.problems:
        print(problem)
    valid = plural(len(declared.specs), "valid container spec")
    if declared.problems:
        log.error("%s; %s", plural(len(declared.problems), "problem"), valid)
        return EXIT_PROBLEMS
    log.info("%s", valid)
    return EXIT_OK


def export(config, export_format, family=None):
    """Print the declared containers as an ECS task definition or a compose file. Lines
    saying what does not translate go to standard error; nothing touches the engine."""
    if export_format not in ("ecs", "compose"):
        raise DockerupError(f"--format: expected ecs or compose, got {export_format!r}")
    if family is None:
        import socket

        family = re.sub(r"[^a-zA-Z0-9_-]", "-", socket.gethostname())[:255] or "dockerup"
    if not re.fullmatch(r"[a-zA-Z0-9_-]{1,255}", family):
        raise DockerupError(f"--family: {family!r} is not a task family: up to 255 letters, digits, '_' and '-'")
    user_data = None
    if config.aws and metadata_endpoint():
        user_data = read_user_data(config.cache, metadata_endpoint(), remember=False)
    declared = load_declared(config, user_data)
    if declared.problems:
        for problem in declared.problems:
            log.error("%s", problem)
        log.error("nothing exported: %s", plural(len(declared.problems), "problem"))
        return EXIT_PROBLEMS
    document, notes = export_ecs(declared.specs, family) if export_format == "ecs" else export_compose(declared.specs)
    for note in notes:
        print(note, file=sys.stderr)
    print(json.dumps(document, indent=2))
    return EXIT_OK


class OneLineFormatter(logging.Formatter):
    """Each message on one line; a traceback (-v) still follows it as it is."""

    def formatMessage(self, record):
        record.message = one_line(record.message)
        return super().formatMessage(record)


def setup_logging(verbose):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(asctime)s dockerup %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def usage_problem(argv):
    """The option or argument the usage does not accept, as it was typed:
    docopt-ng shows it as a Python repr ("Option(None, '--bogus', 0, True)")."""
    options = re.findall(r"^  (?:(-\w), )?(--[a-z-]+)( [A-Z]+)?", __doc__.split("\nOptions:")[1], re.M)
    known = {name for short, long, _ in options for name in (short, long) if name}
    takes_value = {long for _, long, value in options if value}
    words, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("-") and arg != "-":
            name = arg.split("=", 1)[0]
            names = [name] if name.startswith("--") else [f"-{c}" for c in name[1:]]  # -vh is -v -h
            for name in names:
                if name not in known:
                    return f"unknown option {name}{did_you_mean(name, known)}"
            skip = name in takes_value and "=" not in arg
        else:
            words.append(arg)
    if words[:1] in (["retry"], ["rollback"]):
        return None
    if words[:1] == ["export"] and not any(arg.split("=", 1)[0] == "--format" for arg in argv):
        return "export needs --format ecs or --format compose"
    extra = words[1:] if words[:1] in (["validate"], ["schema"], ["export"], ["status"]) else words
    return f"unexpected argument {extra[0]!r}" if extra else None


def main(argv=None):
    try:
        docopt = dependency("docopt")
    except MissingPackage as e:
        print(f"dockerup: {e}", file=sys.stderr)
        return EXIT_FATAL
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = docopt.docopt(__doc__, argv, version=f"dockerup {__version__}")
    except docopt.DocoptExit as e:
        usage = docopt.DocoptExit.usage.strip()
        reason = usage_problem(argv) or str(e).removesuffix(usage).strip()
        print("\n".join(filter(None, (reason, usage, "Run 'dockerup --help' for the options."))), file=sys.stderr)
        return EXIT_FATAL
    setup_logging(args["--verbose"])
    if args["schema"]:
        sys.stdout.write(SCHEMA_TEXTS[next((kind for kind in ("user-data", "task-definition") if args[kind]),
                                           "container")])
        return EXIT_OK
    try:
        config = load_config(args)
        if args["validate"]:
            return validate(config, args["--user-data"])
        if args["export"]:
            return export(config, args["--format"], args["--family"])
        docker = Docker(config.remote, config.timeout, config.dry_run, config.show_secrets,
                        journal=[] if config.dry_run and config.format == "json" else None)
        stop = StopRequest()
        request = next((Request(kind, args["NAME"]) for kind in ("retry", "rollback") if args[kind]), None)
        sync_now = threading.Event() if config.server and not request and not args["status"] else None
        install_signal_handlers(stop, sync_now)
        if args["status"] or config.dry_run:
            fd = trust_cache_dir(config.cache, create=False)  # status and a dry run read the cache too
            if fd is not None:
                os.close(fd)
        if args["status"]:
            return show_status(config, docker)
        if sync_now is not None:
            return serve(config, docker, stop, sync_now, ConfigSource(args))
        if config.dry_run:
            return converge(config, docker, stop, request).exit_code
        return converge_locked(config, docker, stop, request)
    except DockerupError as e:
        log.error("%s", e)
        return e.exit_code
    except BrokenPipeError:
        # The reader stopped reading (dockerup status | head): nothing is wrong, and
        # Python must not complain again when it flushes standard output at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        log.error("internal error: %s: %s%s", type(e).__name__, e, "" if args["--verbose"] else " (-v shows the traceback)",
                  exc_info=args["--verbose"])
        return EXIT_FATAL


if __name__ == "__main__":
    sys.exit(main())
