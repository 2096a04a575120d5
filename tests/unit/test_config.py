"""Tests of alertd.config: the TOML format, its validation, secrets and the example file."""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from alertd.config import (
    ALL_SCOPES,
    AuthConfig,
    HelpdeskConfig,
    LogConfig,
    ServerConfig,
    StoreConfig,
    default_data_dir,
    load_config,
    parse_duration,
    summary,
)
from alertd.errors import ConfigError
from alertd.model import CheckState, Level, Priority
from alertd.policy import DEFAULT_MATRIX, DEFAULT_URGENCY, LifecyclePolicy
from tests.support import ROOT

EXAMPLE = ROOT / "config" / "alertd.example.toml"
# Auth fails closed: every file loaded here has at least this token (from the environment).
ENV = {"STATE_DIRECTORY": "/srv/alertd", "ALERTD_TOKENS": "env-t0ken"}


def write(directory: Path, text: str, name: str = "alertd.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV if env is None else env)
    assert all(p.file == str(path) for p in info.value.problems)
    return {p.key: p.message for p in info.value.problems}


def test_defaults_without_file() -> None:
    """With no file every setting has its documented default and the store lives in the data dir."""
    env = {"STATE_DIRECTORY": "/var/lib/alertd:/var/lib/other", "ALERTD_TOKENS": "t"}
    config = load_config(None, env)

    assert config.server == ServerConfig(host="127.0.0.1", port=8780)
    assert config.store == StoreConfig(path=Path("/var/lib/alertd/alertd.db"), synchronous="FULL")
    assert config.auth == AuthConfig(("t",), ("env ALERTD_TOKENS",), (ALL_SCOPES,))
    assert config.log == LogConfig(level="info")
    assert config.lifecycle == LifecyclePolicy()
    assert config.source is None
    assert summary(config) == (
        "config OK: listen 127.0.0.1:8780, store /var/lib/alertd/alertd.db, "
        "1 auth token (env ALERTD_TOKENS), 0 impact rules, no helpdesk"
    )
    # Without any token the defaults are refused: the API is never open by accident.
    with pytest.raises(ConfigError) as info:
        load_config(None, {"STATE_DIRECTORY": "/var/lib/alertd"})
    assert [p.key for p in info.value.problems] == ["auth.tokens"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STATE_DIRECTORY": "/a:/b", "XDG_STATE_HOME": "/x", "HOME": "/h"}, "/a"),
        ({"XDG_STATE_HOME": "/x", "HOME": "/h"}, "/x/alertd"),
        ({"XDG_STATE_HOME": "relative", "HOME": "/h"}, "/h/.local/state/alertd"),
        ({"STATE_DIRECTORY": "", "HOME": "/h"}, "/h/.local/state/alertd"),
    ],
)
def test_default_data_dir(env: dict[str, str], expected: str) -> None:
    """systemd's STATE_DIRECTORY wins, then an absolute XDG_STATE_HOME, then ~/.local/state."""
    assert default_data_dir(env) == Path(expected)


FULL = """
[server]
listen = "[::1]:9000"
max_body_bytes = 1024
max_results_per_request = 10

[store]
path = "/data/incidents.db"
synchronous = "normal"

[auth]
tokens = ["tok-a"]

[log]
level = "debug"
changes = "debug"

[lifecycle]
open_after = 3
recovery_hold = "30s"
reopen_window = "1h30m"
flap_low = 10
flap_high = 30.5
history_limit = 5

[priority]
default_impact = "low"
unknown_urgency = "medium"

[priority.matrix]
low = { low = "medium" }

[[priority.rules]]
name = "databases"
impact = "high"
host = "db-*"
service = "re:^(MySQL|Postgres).*"
labels = { hostgroups = "*production*" }

[[priority.rules]]
impact = "medium"
match = { labels = { "app.kubernetes.io/name" = "re:web|api" } }
"""


def test_full_file_round_trips(tmp_path: Path) -> None:
    """Every key of a complete file lands in the matching dataclass field, typed."""
    path = write(tmp_path, FULL)
    config = load_config(path, {})

    assert config.source == path
    assert config.server == ServerConfig("::1", 9000, 1024, 10)
    assert config.store == StoreConfig(Path("/data/incidents.db"), "NORMAL")
    assert config.auth == AuthConfig(("tok-a",), ("auth.tokens",), (ALL_SCOPES,))
    assert config.log == LogConfig("debug", "debug")
    assert replace(config.lifecycle, priority=LifecyclePolicy().priority) == LifecyclePolicy(
        open_after=3,
        recovery_hold=timedelta(seconds=30),
        reopen_window=timedelta(hours=1, minutes=30),
        flap_low=10.0,
        flap_high=30.5,
        history_limit=5,
    )
    policy = config.lifecycle.priority
    assert policy.default_impact is Level.LOW
    assert policy.urgency == {**DEFAULT_URGENCY, CheckState.UNKNOWN: Level.MEDIUM}
    low_row = {**DEFAULT_MATRIX[Level.LOW], Level.LOW: Priority.MEDIUM}
    assert policy.matrix == {**DEFAULT_MATRIX, Level.LOW: low_row}

    databases, second = policy.rules
    assert (databases.name, databases.impact) == ("databases", Level.HIGH)
    assert databases.host is not None and databases.service is not None
    assert databases.host.matches("db-1") and not databases.host.matches("DB-1")
    assert not databases.host.matches("xdb-1")
    assert databases.service.matches("MySQL replication")
    assert databases.labels["hostgroups"].matches("linux,production,eu")
    assert (second.name, second.host, second.service) == ("rule 2", None, None)
    app = second.labels["app.kubernetes.io/name"]
    assert app.matches("web") and not app.matches("webshop")  # regexes match the whole value
    assert summary(config) == (
        "config OK: listen [::1]:9000, store /data/incidents.db, "
        "1 auth token (auth.tokens), 2 impact rules, no helpdesk"
    )


BROKEN = """
colour = "blue"

[sever]
listen = "0.0.0.0:80"

[server]
listen = "localhost"
max_body_bytes = "16M"
max_results_per_request = 0

[store]
synchronous = "OFF"
retention = "1h"
retention_chunk = 0

[log]
level = "verbose"
changes = "warning"

[lifecycle]
open_after = true
recovery_hold = "5 minutes"
reopen_window = 86400
flap_low = 30
flap_high = 20

[priority]
default_impact = "HIGH"
matrix = { high = { high = "critical" }, urgent = {} }

[[priority.rules]]
impact = "extreme"
host = "re:db-(["

[[priority.rules]]
name = "everything"
impact = "low"

[[priority.rules]]
host = "web-*"
match = { service = "HTTP" }

[[priority.rules]]
name = "dup"
impact = "low"
host = "a"

[[priority.rules]]
name = "dup"
impact = "low"
host = "b"
"""


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    """One load reports every problem, each with the file, the dotted key and the bad value."""
    path = write(tmp_path, BROKEN)
    problems = problems_of(path)

    expected = {
        "colour": "unknown key",
        "sever": "unknown key; did you mean 'server'?",
        "server.listen": "got 'localhost'",
        "server.max_body_bytes": "expected an integer, got string '16M'",
        "server.max_results_per_request": "must be at least 1, got 0",
        "store.synchronous": "expected one of FULL, NORMAL, got 'OFF'",
        "store.retention": "must be at least 1d, got '1h'",
        "store.retention_chunk": "must be at least 1, got 0",
        "log.level": "expected one of debug, info, warning, error, got 'verbose'",
        "log.changes": "expected one of debug, info, got 'warning'",
        "lifecycle.open_after": "expected an integer, got boolean true",
        "lifecycle.recovery_hold": (
            'expected a duration like "30s", "5m", "2h" or "1d", got \'5 minutes\''
        ),
        "lifecycle.reopen_window": "got integer 86400",
        "lifecycle.flap_low": "must be less than lifecycle.flap_high (20.0), got 30.0",
        "priority.default_impact": "expected one of high, medium, low, got 'HIGH'",
        "priority.matrix.high.high": "expected one of urgent, high, medium, low, got 'critical'",
        "priority.matrix.urgent": "unknown key",
        "priority.rules[1].impact": "expected one of high, medium, low, got 'extreme'",
        "priority.rules[1].host": "invalid regular expression 'db-([': ",
        "priority.rules[2]": "matches everything; use priority.default_impact",
        "priority.rules[3].impact": "required",
        "priority.rules[3].match": "not both",
        "priority.rules[5].name": "duplicate rule name 'dup'",
    }
    assert set(problems) == set(expected)
    for key, fragment in expected.items():
        assert fragment in problems[key], key
    with pytest.raises(ConfigError) as info:
        load_config(path, ENV)
    assert f"{path}: lifecycle.recovery_hold: expected a duration" in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    """Durations are a number and a unit (s, m, h, d), combinable from largest to smallest."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "5", "5 minutes", "5M", "-5m", "1.5h", "30m1h", " 5m", "5m5m", "99999999999d"]
)
def test_parse_duration_rejects(text: str) -> None:
    """Anything else is refused with a message that shows the bad value."""
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_duration(text)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:1", "0.0.0.0", 1),
        ("[::1]:8780", "::1", 8780),
        ("h.example:65535", "h.example", 65535),
    ],
)
def test_listen_accepts(tmp_path: Path, listen: str, host: str, port: int) -> None:
    """server.listen takes "host:port", with IPv6 addresses in brackets (stored without)."""
    config = load_config(write(tmp_path, f'[server]\nlisten = "{listen}"\n'), ENV)
    assert (config.server.host, config.server.port) == (host, port)


@pytest.mark.parametrize(
    "listen", ["localhost", ":8780", "h:0", "h:65536", "h:http", "::1:8780", "[::1]", "[]:80"]
)
def test_listen_rejects(tmp_path: Path, listen: str) -> None:
    """A listen address without a valid host and port 1-65535 is a problem naming the value."""
    problems = problems_of(write(tmp_path, f'[server]\nlisten = "{listen}"\n'))
    assert list(problems) == ["server.listen"]
    assert repr(listen) in problems["server.listen"]


def test_token_sources_combined(tmp_path: Path) -> None:
    """Tokens from the list, the file and the env var are merged in order, without duplicates."""
    write(tmp_path, "# ops tokens\n\nfile-1\n  file-2  \nlist-1\n", name="secrets/tokens")
    path = write(
        tmp_path,
        '[auth]\ntokens = ["list-1", "list-2"]\ntokens_file = "secrets/tokens"\n'
        'tokens_env = "MY_TOKENS"\n',
    )
    env = {"MY_TOKENS": " env-1, env-2\tfile-1 ,,", "ALERTD_TOKENS": "ignored"}

    auth = load_config(path, env).auth

    assert auth.tokens == ("list-1", "list-2", "file-1", "file-2", "env-1", "env-2")
    assert auth.token_sources == (
        "auth.tokens",
        f"file {tmp_path / 'secrets' / 'tokens'}",
        "env MY_TOKENS",
    )
    assert load_config(None, {"ALERTD_TOKENS": "a,b"}).auth == AuthConfig(
        ("a", "b"), ("env ALERTD_TOKENS",), (ALL_SCOPES, ALL_SCOPES)
    )
    no_env = write(tmp_path, '[auth]\ntokens_env = ""\n', name="no-env.toml")
    assert "no API token" in problems_of(no_env, {"ALERTD_TOKENS": "a"})["auth.tokens"]


def test_token_values_never_shown(tmp_path: Path) -> None:
    """No token value appears in a summary, a repr, or any configuration error message."""
    secrets = ["s3cret-list", "s3cret-file", "s3cret-env"]
    write(tmp_path, "s3cret-file\n", name="tokens")
    good = write(tmp_path, '[auth]\ntokens = ["s3cret-list"]\ntokens_file = "tokens"\n')
    config = load_config(good, {"ALERTD_TOKENS": "s3cret-env"})
    assert len(config.auth.tokens) == 3
    shown = [summary(config), repr(config), str(config), repr(config.auth)]

    write(tmp_path, "ok\ns3cret bad-line\n", name="bad-tokens")
    (tmp_path / "unreadable").mkdir()
    bad = [
        '[auth]\ntokens = ["s3cret-list", "s3cret with space", 7]\ntokens_file = "bad-tokens"\n',
        '[auth]\ntokens = "s3cret-list"\ntokens_file = "unreadable"\n',
    ]
    for n, text in enumerate(bad):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, text, name=f"bad{n}.toml"), {"ALERTD_TOKENS": "s3cret-env"})
        assert {p.key for p in info.value.problems} >= {"auth.tokens_file"}
        shown.append(str(info.value))

    for text in shown:
        for secret in [*secrets, "s3cret with space", "s3cret bad-line"]:
            assert secret not in text


def test_relative_paths_resolve_against_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative store and token file paths mean "next to the config file", not the cwd."""
    write(tmp_path / "etc", "tok\n", name="tokens")
    write(tmp_path / "etc", '[store]\npath = "data/alertd.db"\n[auth]\ntokens_file = "tokens"\n')
    monkeypatch.chdir(tmp_path)

    config = load_config(Path("etc/alertd.toml"), {})

    assert config.store.path == tmp_path / "etc" / "data" / "alertd.db"
    assert config.auth.tokens == ("tok",)
    absolute = write(tmp_path, '[store]\npath = "/abs/alertd.db"\n', name="abs.toml")
    assert load_config(absolute, ENV).store.path == Path("/abs/alertd.db")


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    """A missing file or a TOML syntax error is one problem about the whole file (key "")."""
    for path in [tmp_path / "missing.toml", write(tmp_path, "[server\nlisten = 1\n")]:
        with pytest.raises(ConfigError) as info:
            load_config(path, ENV)
        (problem,) = info.value.problems
        assert (problem.file, problem.key) == (str(path), "")


# The public contract: exactly these keys, each documented in the example file.
CONTRACT_KEYS = {
    "server": {"listen", "max_body_bytes", "max_results_per_request"},
    "store": {"path", "synchronous", "retention", "retention_chunk", "retention_interval",
              "password_env", "lease"},
    "auth": {"tokens", "tokens_file", "tokens_env", "disabled"},
    "nrdp": {"tokens", "tokens_file", "tokens_env"},
    "alertmanager": {
        "key_labels",
        "host_label",
        "service_label",
        "severity_label",
        "unmapped_severity",
        "severity_map",
        "strip_port",
    },
    "log": {"level", "changes"},
    "lifecycle": {
        "open_after",
        "recovery_hold",
        "reopen_window",
        "flap_low",
        "flap_high",
        "history_limit",
        "stale_after",
    },
    "priority": {"default_impact", "unknown_urgency", "matrix", "rules"},
    "escalation": {"stop_on_ack", "urgent"},
    "updates": {"urgent", "high", "medium", "low", "public"},
    "ui": {"enabled", "read_only", "page_size", "refresh"},
    "helpdesk": {
        "kind",
        "url",
        "api_key_file",
        "api_key_env",
        "requester_email",
        "source",
        "type",
        "group_id",
        "tags",
        "custom_fields",
        "resolve_status",
        "subject_template",
        "monitoring_url",
        "rate_limit_per_minute",
        "note_interval",
        "release_grace",
        "service_grace",
        "poll_interval",
        "concurrency",
        "timeout",
        "keep_agent_priority",
        "on_missing_ticket",
        "instance",
        "public_notes",
        "on_agent_close",
        "webhook_secret_file",
        "webhook_secret_env",
        "rules",
        "taken_statuses",
        "done_statuses",
        "bypass_mandatory",
        "outcome_wait",
        "plan",
        "rate_limit_create_per_minute",
        "rate_limit_update_per_minute",
        "rate_limit_list_per_minute",
    },
    "nagios": {"command_file", "ack_on_ticket", "ack_sources", "ack_author"},
}

SETTING = re.compile(r"^# (?=\[|[A-Za-z_][\w.]*\s*=)", re.MULTILINE)


def test_example_file_matches_defaults(tmp_path: Path) -> None:
    """Uncommenting every setting of the example gives the defaults, plus its one example rule."""
    text = EXAMPLE.read_text(encoding="utf-8")
    uncommented = SETTING.sub("", text)
    # Prose is "##"; any other comment would make this mechanical uncommenting unreliable.
    assert all(line.startswith("##") for line in uncommented.splitlines() if line.startswith("#"))
    assert {k: set(v) for k, v in tomllib.loads(uncommented).items()} == CONTRACT_KEYS

    path = write(tmp_path, uncommented)
    write(tmp_path, "## the example names this file; no tokens in it\n", name="tokens")
    write(tmp_path, "example-key\n", name="helpdesk.key")
    write(tmp_path, "example-webhook-secret-0123\n", name="webhook.secret")
    write(tmp_path, "## the example names this file too\n", name="nrdp-tokens")
    # Where the example's store path points; a token, since the example configures none.
    env = {"STATE_DIRECTORY": "/var/lib/alertd", "ALERTD_TOKENS": "t"}
    config = load_config(path, env)
    defaults = load_config(None, env)

    assert (config.server, config.store, config.auth, config.log, config.nrdp) == (
        defaults.server,
        defaults.store,
        defaults.auth,
        defaults.log,
        defaults.nrdp,
    )
    assert config.alertmanager == defaults.alertmanager
    assert config.ui == defaults.ui
    (rule,) = config.lifecycle.priority.rules
    assert (rule.name, rule.impact) == ("databases", Level.HIGH)
    priority = replace(config.lifecycle.priority, rules=())
    assert replace(config.lifecycle, priority=priority) == defaults.lifecycle

    (director,) = config.escalation.levels[Priority.URGENT]
    assert (director.name, director.after, director.priority) == (
        "director",
        timedelta(hours=1),
        "raise",
    )
    assert director.notify_emails == ("director@example.com",)
    levels = {
        **config.escalation.levels,
        Priority.URGENT: defaults.escalation.levels[Priority.URGENT],
    }
    assert levels == dict(defaults.escalation.levels)
    assert replace(config.escalation, levels=defaults.escalation.levels) == defaults.escalation

    helpdesk = config.helpdesk
    assert helpdesk is not None and defaults.helpdesk is None  # no table: no tickets
    assert (helpdesk.api_key, helpdesk.group_id) == ("example-key", 42)
    assert dict(helpdesk.custom_fields) == {"cf_origin": "monitoring"}
    example_only = {
        "url": helpdesk.url,
        "api_key": "example-key",
        "api_key_source": helpdesk.api_key_source,
        "requester_email": helpdesk.requester_email,
        "group_id": 42,
        "custom_fields": helpdesk.custom_fields,
        "monitoring_url": helpdesk.monitoring_url,
        "webhook_secret": "example-webhook-secret-0123",
        "webhook_secret_source": helpdesk.webhook_secret_source,
        "rules": helpdesk.rules,
    }
    (route,) = helpdesk.rules
    assert (route.name, dict(route.fields), route.recovery) == (
        "databases to the DBA team", {"group_id": 7}, "note"
    )
    assert helpdesk == replace(HelpdeskConfig(**example_only))
    assert config.nagios == replace(
        defaults.nagios, command_file=Path("/usr/local/nagios/var/rw/nagios.cmd")
    )


def test_nagios_acknowledgements_need_a_command_file_and_known_sources(tmp_path: Path) -> None:
    """[nagios]: ack_on_ticket without command_file, an unknown source and an author that would
    break the ';'-separated command are each named; a relative path is beside the file."""
    bad = write(tmp_path, '[nagios]\nack_on_ticket = true\nack_sources = ["nagios", "snmp"]\n'
                          'ack_author = "a;b"\n')  # fmt: skip
    assert set(problems_of(bad)) == {
        "nagios.ack_on_ticket", "nagios.ack_sources", "nagios.ack_author"
    }  # fmt: skip
    good = write(tmp_path, '[nagios]\ncommand_file = "rw/nagios.cmd"\nack_on_ticket = true\n'
                           'ack_sources = ["nagios", "nrdp"]\n', name="good.toml")  # fmt: skip
    nagios = load_config(good, {"ALERTD_TOKENS": "t0ken-0123"}).nagios
    assert nagios.command_file == tmp_path / "rw" / "nagios.cmd"
    assert (nagios.ack_on_ticket, nagios.ack_sources) == (True, ("nagios", "nrdp"))


def test_helpdesk_problems_are_named_and_the_key_stays_secret(tmp_path: Path) -> None:
    """A [helpdesk] table is checked whole: URL, requester, key source, enums, templates; the
    API key, read from the environment, never shows in a problem, summary or repr."""
    path = write(
        tmp_path,
        '[helpdesk]\nurl = "acme.freshdesk.com"\nrequester_email = "noc"\nsource = 4\n'
        'resolve_status = 3\nsubject_template = "{host} {severity}"\nkind = "zendesk"\n',
    )
    problems = problems_of(path, {"ALERTD_TOKENS": "t"})
    assert set(problems) == {
        "helpdesk.url", "helpdesk.requester_email", "helpdesk.api_key_env", "helpdesk.source",
        "helpdesk.resolve_status", "helpdesk.subject_template", "helpdesk.kind",
    }  # fmt: skip
    assert "ALERTD_HELPDESK_API_KEY is not set" in problems["helpdesk.api_key_env"]
    assert "unknown field {severity}" in problems["helpdesk.subject_template"]

    good = write(
        tmp_path,
        '[helpdesk]\nurl = "https://acme.freshdesk.com/"\nrequester_email = "noc@example.com"\n'
        'api_key_env = "FD_KEY"\n',
    )
    config = load_config(good, {"FD_KEY": "sup3r-s3cret-key", "ALERTD_TOKENS": "t"})
    assert config.helpdesk is not None and config.helpdesk.api_key == "sup3r-s3cret-key"
    assert config.helpdesk.url == "https://acme.freshdesk.com"
    assert "sup3r" not in repr(config) + summary(config)
    assert summary(config).endswith(
        "helpdesk freshdesk https://acme.freshdesk.com (key from env FD_KEY)"
    )


def test_nrdp_tokens_and_alertmanager_mapping(tmp_path: Path) -> None:
    """[nrdp] reads tokens like [auth] (its own env var); [alertmanager] merges severities over
    the defaults; every wrong value is named by its dotted key."""
    write(tmp_path, "nrdp-file-token\n", name="nrdp-tokens")
    good = write(tmp_path, (
        '[nrdp]\ntokens = ["nrdp-listed"]\ntokens_file = "nrdp-tokens"\n'
        '[alertmanager]\nkey_labels = ["alertname", "cluster"]\nhost_label = "node"\n'
        'unmapped_severity = "ignore"\n[alertmanager.severity_map]\nPage = "CRITICAL"\n'
        'info = "WARNING"\n'
    ))  # fmt: skip
    config = load_config(good, {"ALERTD_NRDP_TOKENS": "nrdp-env", "ALERTD_TOKENS": "api"})
    assert config.nrdp.tokens == ("nrdp-listed", "nrdp-file-token", "nrdp-env")
    assert config.auth.tokens == ("api",)
    am = config.alertmanager
    assert (am.key_labels, am.host_label, am.unmapped_severity) == (
        ("alertname", "cluster"), "node", None,
    )  # fmt: skip
    assert am.severity_map["page"] is CheckState.CRITICAL
    assert am.severity_map["info"] is CheckState.WARNING
    assert am.severity_map["warning"] is CheckState.WARNING  # default kept
    assert am.severity_map["none"] is None
    assert "1 NRDP token" not in summary(config) and "3 NRDP tokens" in summary(config)

    bad = write(tmp_path, (
        '[alertmanager]\nkey_labels = ["x-y"]\nhost_label = "my-host"\nunmapped_severity = "LOUD"\n'
        'severity_map = { critical = 2 }\n'
    ), name="bad.toml")  # fmt: skip
    assert set(problems_of(bad)) == {
        "alertmanager.key_labels", "alertmanager.host_label", "alertmanager.unmapped_severity",
        "alertmanager.severity_map.critical",
    }  # fmt: skip


def test_ticket_rules_are_checked_per_key_and_per_helpdesk_kind(tmp_path: Path) -> None:
    """A routing rule's problems name the rule's key: Freshdesk fields on Freshservice, an
    unknown recovery, a bad priority, a short webhook secret (its length only, never itself)."""
    path = write(
        tmp_path,
        '[helpdesk]\nkind = "freshservice"\nurl = "https://acme.freshservice.com"\n'
        'requester_email = "noc@example.com"\n'
        '[[helpdesk.rules]]\nservice = "Disk*"\nproduct_id = 5\nrecovery = "delete"\n'
        'min_priority = "huge"\ntags = ["' + "t" * 33 + '"]\n'
        '[[helpdesk.rules]]\nname = "crowded"\ntags = [' + ", ".join(f'"r{n}"' for n in range(29))
        + "]\n",
    )
    with pytest.raises(ConfigError) as caught:
        env = {"ALERTD_HELPDESK_API_KEY": "k", "ALERTD_HELPDESK_WEBHOOK_SECRET": "short"}
        load_config(path, env=env)
    text = str(caught.value)
    assert "helpdesk.rules[1].product_id: not a freshservice ticket field" in text
    assert "helpdesk.rules[1].recovery: expected one of resolve, close, note" in text
    assert "helpdesk.rules[1].min_priority: expected one of" in text
    assert "helpdesk.rules[1].tags: 'ttttt" in text and "longer than 32 characters" in text
    assert "helpdesk.rules: rule 'crowded': its tags and helpdesk.tags come to more than 29" in text
    assert "helpdesk.webhook_secret_env: the secret is 5 characters" in text
    assert "short" not in text.replace("the secret is", "")


def test_helpdesk_values_are_checked_per_product_and_against_the_apis_limits(
    tmp_path: Path,
) -> None:
    """Sources are each product's own; an instance name that could make the incident's tag
    longer than the API's 32 characters, or a configured tag over 32, is refused at load."""
    base = '[helpdesk]\nurl = "https://acme.freshdesk.com"\nrequester_email = "n@example.com"\n'
    env = {"ALERTD_HELPDESK_API_KEY": "k", "ALERTD_TOKENS": "t0ken-0123"}
    desk = write(
        tmp_path,
        base + 'source = 4\ninstance = "eu-west-production"\ntags = ["' + "t" * 33 + '"]\n'
        "workspace_id = 5\nbypass_mandatory = true\ntaken_statuses = [4]\n",
    )
    problems = problems_of(desk, env)
    assert set(problems) == {
        "helpdesk.source", "helpdesk.instance", "helpdesk.tags", "helpdesk.workspace_id",
        "helpdesk.bypass_mandatory", "helpdesk.taken_statuses",
    }  # fmt: skip
    assert "7 (Chat)" in problems["helpdesk.source"]
    assert "32 characters" in problems["helpdesk.instance"]

    service = write(
        tmp_path,
        base + 'kind = "freshservice"\nsource = 4\ninstance = "eu-west-prod-1"\n'
        "workspace_id = 5\nbypass_mandatory = true\ntaken_statuses = [3, 7]\n"
        'done_statuses = [6]\non_missing_ticket = "restore"\n',
    )
    helpdesk = load_config(service, env).helpdesk
    assert helpdesk is not None
    assert (helpdesk.source, helpdesk.workspace_id, helpdesk.bypass_mandatory) == (4, 5, True)
    assert (helpdesk.taken_statuses, helpdesk.done_statuses) == ((3, 7), (6,))
    assert len(f"alertd-{helpdesk.instance}-{10**10 - 1}") == 32


def test_a_postgresql_store_takes_its_password_from_a_file_or_the_environment(
    tmp_path: Path,
) -> None:
    url = "postgresql://alertd@db.example:5432/alertd"
    (tmp_path / "pg.secret").write_text("s3cret-from-file\n")
    by_file = load_config(
        write(tmp_path, f'[store]\nurl = "{url}"\npassword_file = "pg.secret"\nlease = "10s"\n'),
        ENV,
    )
    assert by_file.store.url == url and by_file.store.password == "s3cret-from-file"
    assert by_file.store.lease == timedelta(seconds=10)
    assert by_file.store.where == url
    assert "s3cret" not in repr(by_file.store)  # never in a repr, so never in a log line
    by_env = load_config(write(tmp_path, f'[store]\nurl = "{url}"\n'),
                         {**ENV, "ALERTD_STORE_PASSWORD": "s3cret-env"})  # fmt: skip
    assert by_env.store.password == "s3cret-env"
    assert by_env.store.password_source == "env ALERTD_STORE_PASSWORD"
    # No url: SQLite, whatever the environment holds.
    assert load_config(None, {**ENV, "ALERTD_STORE_PASSWORD": "x"}).store.url is None


def test_a_password_in_the_store_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    found = problems_of(
        write(tmp_path, '[store]\nurl = "postgresql://alertd:hunter22@db/alertd"\n')
    )
    assert list(found) == ["store.url"]
    assert "password_file" in found["store.url"] and "hunter22" not in found["store.url"]
    found = problems_of(write(tmp_path, '[store]\nurl = "mysql://db/alertd"\n'))
    assert "postgresql://" in found["store.url"]
    found = problems_of(write(tmp_path, '[store]\nurl = "postgresql://db"\n'))
    assert "database" in found["store.url"]
    found = problems_of(
        write(tmp_path, '[store]\nurl = "postgresql://db/a"\npassword_env = "NOPE"\n')
    )
    assert "NOPE is not set" in found["store.password_env"]
