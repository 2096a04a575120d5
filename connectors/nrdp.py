"""NRDP (Nagios Remote Data Processor) requests and replies (docs/protocols.md 2). Pure.

Owns what a stock NRDP server reads from a request (form fields merged from query string and
body, the `xml`/`json` data aliases, the check-result XML and JSON schemas) and the exact
reply bodies its clients parse (`<status>` 0 or -1, `N checks processed`, `BAD TOKEN`, ...).

Client quirk handled here: `send_nrdp.sh` posts its XML **without URL-encoding it** (it only
pre-encodes `&`, `<`, `>` in the output as `%26`, `%3C`, `%3E`). A stock NRDP server decodes
that body as a normal form, so a `+` in the output arrives as a space and `%ab` as garbage.
A properly encoding client never leaves `<` or `{` bare, so a field value that *starts* with
one of them was sent raw: alertd takes it literally, undoing only those three escapes, and
the output arrives as the client meant it. (A raw `&` still splits the form, as with NRDP.)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus, unquote_to_bytes
from xml.parsers import expat

from alertd import jsontext
from alertd.errors import NrdpRefusal
from alertd.model import CheckResult, Notice, Reporting, StateType
from connectors.extcmd import parse_command
from connectors.plugin_output import BadValue, name, split_output, state_from_code

SOURCE = "nrdp"
XML, JSON = "xml", "json"
# Data fields in increasing precedence, as NRDP's grab_xml() / grab_json() read them.
XML_FIELDS = ("XMLDATA", "xmldata", "xml")
JSON_FIELDS = ("JSONDATA", "jsondata", "json")
# What NRDP 2.0.6 still reports as its version in the hello reply.
PRODUCT_VERSION = "2.0.5"

Form = dict[str, list[str]]

_SH_ESCAPES = re.compile(r"%(26|3[cC]|3[eE])")
_SH_CHARS = {"26": "&", "3c": "<", "3e": ">"}


def decode_form(query: str, body: str) -> Form:
    """Form fields of the query string, then of the body (a body field wins, as in NRDP)."""
    fields: Form = {}
    for text in (query, body):
        parsed: Form = {}
        for part in text.split("&"):
            if not part:
                continue
            key, _, value = part.partition("=")
            if value[:1] in ("<", "{"):  # sent raw (send_nrdp.sh, curl -d): see module doc
                value = _SH_ESCAPES.sub(lambda m: _SH_CHARS[m.group(1).lower()], value)
            else:
                value = _unquote_plus(value)
            # PHP collects `command[]=a&command[]=b` into one array field `command`.
            parsed.setdefault(unquote_plus(key).removesuffix("[]"), []).append(value)
        fields.update(parsed)
    return fields


# The fields that decide how a request is answered, read before the body is decoded.
CONTROL_FIELDS = ("cmd", "token", "output_type")
# A control field's value is at most this long (tokens and command names are short).
MAX_CONTROL = 1024
# Fields beyond the commands themselves (cmd, token, output_type, data, a few unknown).
SPARE_FIELDS = 64


def peek(query: str, body: bytes) -> Form:
    """The control fields (`CONTROL_FIELDS`) and whether each data field is non-empty, found
    without decoding the form: a few `rfind`s over the raw bytes, so a 16 MiB body with a wrong
    token costs milliseconds. Same precedence as `decode_form`: a field in the body replaces the
    query's, and the last occurrence counts. Data fields read "1" when non-empty (their value is
    not decoded here). A field whose name is percent-encoded is not seen (no client does that).
    """
    raw_query = query.encode("utf-8", "surrogateescape")
    fields: Form = {}
    for field in (*CONTROL_FIELDS, *XML_FIELDS, *JSON_FIELDS):
        key = field.encode()
        for source in (body, raw_query):
            value = _last_value(source, key)
            if value is None:
                continue
            if field in CONTROL_FIELDS:
                text = value[:MAX_CONTROL].decode("utf-8", "replace")
                fields[field] = [unquote_plus(text)]
            else:
                fields[field] = ["1" if value else ""]
            break
    return fields


def _last_value(raw: bytes, key: bytes) -> bytes | None:
    """The raw value of the last `key=` field in `raw` (its first bytes at most), or None."""
    at = raw.rfind(b"&" + key + b"=")
    start = at + len(key) + 2 if at >= 0 else (len(key) + 1 if raw.startswith(key + b"=") else -1)
    if start < 0:
        return None
    end = raw.find(b"&", start, start + MAX_CONTROL + 1)
    return raw[start : end if end >= 0 else start + MAX_CONTROL + 1]


def too_many_fields(query: str, body: bytes, max_items: int) -> int | None:
    """The number of form fields if over what `max_items` commands need, else None. Counted
    before anything is decoded: splitting millions of empty fields is what stalls a parser."""
    count = query.count("&") + body.count(b"&") + 2
    return count if count > max_items + SPARE_FIELDS else None


# Long values are unquoted in pieces of this size: one C call over megabytes would hold the GIL
# (and so the event loop, even from a worker thread) for the whole value.
UNQUOTE_PIECE = 64 * 1024


def _unquote_plus(value: str) -> str:
    """`unquote_plus`, in pieces for a long value (the escapes' bytes are joined before they
    are decoded, so a character split between two pieces is kept whole)."""
    if len(value) <= UNQUOTE_PIECE:
        return unquote_plus(value)
    pieces: list[bytes] = []
    start = 0
    while start < len(value):
        end = min(start + UNQUOTE_PIECE, len(value))
        # Never cut inside "%XX": move the cut before a "%" in the last two characters.
        cut = value.rfind("%", end - 2, end)
        if cut > start and end < len(value):
            end = cut
        pieces.append(unquote_to_bytes(value[start:end].replace("+", " ")))
        start = end
    return b"".join(pieces).decode("utf-8", "replace")


def first(form: Form, *names: str) -> str:
    """The value of the highest-precedence field among `names` (last wins), or ""."""
    for field in reversed(names):
        values = form.get(field)
        if values and values[-1]:
            return values[-1]
    return ""


def reply_format(form: Form) -> str:
    """XML if any XML field is non-empty, else JSON if a JSON field is present, else XML;
    `output_type` overrides, as in NRDP's `output_type()`."""
    wanted = first(form, "output_type").lower()
    if wanted in (XML, JSON):
        return wanted
    if first(form, *XML_FIELDS):
        return XML
    return JSON if any(f in form for f in JSON_FIELDS) else XML


# --- submitcheck ---------------------------------------------------------------------------


def parse_submitcheck(form: Form, now: datetime, max_items: int) -> list[CheckResult]:
    """The check results of a `submitcheck` request; all-or-nothing (NrdpRefusal names why)."""
    fmt = reply_format(form)
    xml_text = first(form, *XML_FIELDS)
    if xml_text or not first(form, *JSON_FIELDS):
        # No data at all is BAD XML too: NRDP parses the empty string as XML and fails.
        items, problem = _xml_items(xml_text, fmt), XML
    else:
        items, problem = _json_items(first(form, *JSON_FIELDS), fmt), JSON
    code = "BAD XML" if problem == XML else "BAD JSON"
    if len(items) > max_items:
        raise NrdpRefusal(code, f"too many check results: {len(items)} > {max_items}", fmt)
    results: list[CheckResult] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        try:
            results.append(_result(item, now))
        except BadValue as bad:
            problems.append(f"checkresult[{index}]{_which(item)}: {bad.field}: {bad.message}")
    _refuse_any(problems, code, fmt)
    return results


def _which(item: Mapping[str, Any]) -> str:
    host, service = item.get("hostname"), item.get("servicename")
    if not isinstance(host, str) or not host.strip():
        return ""
    return f" ({host.strip()}/{service.strip()})" if isinstance(service, str) else f" ({host})"


def _result(item: Mapping[str, Any], now: datetime) -> CheckResult:
    kind = item.get("type") or "host"  # NRDP's default when the attribute is missing
    if kind not in ("host", "service"):
        raise BadValue("type", f"must be host or service, got {kind!r}")
    host = name(_text(item, "hostname"), "hostname")
    service = name(_text(item, "servicename"), "servicename") if kind == "service" else None
    state = state_from_code(item.get("state", ""), host=service is None)
    short, long_output, perfdata = split_output(_text(item, "output"))
    # `time` and `checktype` are read by the schema but not used: stock NRDP ignores both
    # (unless allow_old_results is set) and stamps results with the time of receipt.
    # Passive host results are HARD in Nagios (passive_host_checks_are_soft=0); passive
    # service results go through soft/hard logic, which alertd emulates (open_after).
    state_type = StateType.HARD if service is None else None
    # Passive results are a stream: a check that submits, submits every time it runs.
    return CheckResult(
        host, service, state, now, short, long_output, perfdata, state_type, source=SOURCE,
        reporting=Reporting.STREAM,
    )  # fmt: skip


def _text(item: Mapping[str, Any], field: str) -> str:
    value = item.get(field, "")
    if not isinstance(value, str):
        raise BadValue(field, f"expected a string, got {type(value).__name__}")
    return value


class _Refused(Exception):
    """A DTD in the document: refused before any entity can be declared (billion laughs)."""


def _xml_items(text: str, fmt: str) -> list[dict[str, str]]:
    """`<checkresult>` elements as dicts of their attributes and child texts.

    send_nrdp.py (both Python clients) in stdin mode closes `</checkresults>` after every
    line, so its documents have junk after the root element. Stock NRDP answers BAD XML;
    alertd, when a first parse fails on a document with several closing root tags, parses
    it once more with the root tags collapsed into one.
    """
    try:
        return _parse_xml(text)
    except expat.ExpatError as exc:
        first_error = exc
        if text.count("</checkresults>") > 1:
            body = _ROOT_TAGS.sub("", _XML_DECL.sub("", text, count=1))
            try:
                return _parse_xml(f"<checkresults>{body}</checkresults>")
            except (expat.ExpatError, _Refused):
                pass
        message = expat.errors.messages[first_error.code]
        info = f"{message}: line {first_error.lineno}, column {first_error.offset}"
        raise NrdpRefusal("BAD XML", info, fmt) from first_error
    except _Refused as exc:
        raise NrdpRefusal("BAD XML", "DOCTYPE declarations are not accepted", fmt) from exc


_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_ROOT_TAGS = re.compile(r"</?checkresults\s*>")


def _parse_xml(text: str) -> list[dict[str, str]]:
    """Parse with stdlib expat, any DOCTYPE refused: without a DTD no entity can be declared,
    so entity expansion (billion laughs) and external entities are impossible."""
    items: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    field: str | None = None
    texts: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal current, field
        if tag == "checkresult" and current is None:
            current = {"type": attrs.get("type", "")}
        elif current is not None:
            field = tag
            texts.clear()

    def end(tag: str) -> None:
        nonlocal current, field
        if tag == "checkresult" and current is not None and field is None:
            items.append(current)
            current = None
        elif current is not None and tag == field:
            current[field] = "".join(texts)
            field = None

    def data(chunk: str) -> None:
        if field is not None:
            texts.append(chunk)

    def refuse(*_: object) -> None:
        raise _Refused

    parser = expat.ParserCreate(encoding="utf-8")  # the str is UTF-8 whatever it declares
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.Parse(text.encode("utf-8", "surrogatepass"), True)
    return items


def _json_items(text: str, fmt: str) -> list[dict[str, Any]]:
    try:
        document = jsontext.loads(text)
    except json.JSONDecodeError as exc:
        info = f"{exc.msg}: line {exc.lineno}, column {exc.colno}"
        raise NrdpRefusal("BAD JSON", info, fmt) from exc
    except jsontext.Unsupported as exc:
        raise NrdpRefusal("BAD JSON", str(exc), fmt) from exc
    results = document.get("checkresults") if isinstance(document, dict) else None
    if not isinstance(results, list):
        raise NrdpRefusal("BAD JSON", 'expected {"checkresults": [...]}', fmt)
    items: list[dict[str, Any]] = []
    for entry in results:
        if not isinstance(entry, dict):
            items.append({"type": "not an object"})
            continue
        # `type` sits in a nested object: {"checkresult": {"type": "service"}, "hostname": ...}
        nested = entry.get("checkresult")
        kind = nested.get("type", "") if isinstance(nested, dict) else entry.get("type", "")
        items.append({**entry, "type": kind})
    return items


# --- submitcmd ----------------------------------------------------------------------------


def parse_submitcmd(form: Form, now: datetime, max_items: int) -> list[CheckResult | Notice]:
    """The results and notices of a `submitcmd` request: one Nagios external command per
    `command` field (or per line of one); all-or-nothing."""
    fmt = reply_format(form)
    lines = [line for value in form.get("command", []) for line in value.splitlines()]
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise NrdpRefusal("NO COMMAND", "", fmt)
    if len(lines) > max_items:
        raise NrdpRefusal("BAD COMMAND", f"too many commands: {len(lines)} > {max_items}", fmt)
    parsed: list[CheckResult | Notice] = []
    problems: list[str] = []
    for index, line in enumerate(lines):
        try:
            parsed.append(parse_command(line, now))
        except BadValue as bad:
            problems.append(f"command[{index}]: {bad.field}: {bad.message}")
    _refuse_any(problems, "BAD COMMAND", fmt)
    return parsed


def _refuse_any(problems: list[str], code: str, fmt: str) -> None:
    """Refuse the whole batch if any item was bad, naming the first ten."""
    if problems:
        shown = "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")
        raise NrdpRefusal(code, f"{len(problems)} invalid, nothing stored: {shown}", fmt)


# --- replies -------------------------------------------------------------------------------


def reply(fmt: str, status: int, message: str, **meta: str) -> tuple[str, str]:
    """(body, content type) of a `result` reply, in NRDP's XML or JSON shape."""
    if fmt == JSON:
        result: dict[str, Any] = {"status": status, "message": message}
        if "output" in meta:
            result["meta"] = {"output": meta["output"]}
        if "information" in meta:
            result["information"] = meta["information"]
        return json.dumps({"result": result}), "application/json"
    # One element per line: send_nrdp.sh pulls the status out with a line-based sed.
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<result>",
        f"  <status>{status}</status>",
        f"  <message>{_escape(message)}</message>",
    ]
    if "information" in meta:
        lines.append(f"  <information>{_escape(meta['information'])}</information>")
    if "output" in meta:
        lines += ["  <meta>", f"    <output>{_escape(meta['output'])}</output>", "  </meta>"]
    lines.append("</result>")
    return "\n".join(lines) + "\n", "text/xml"


def processed(fmt: str, count: int) -> tuple[str, str]:
    # Exactly NRDP's text: no trailing period.
    return reply(fmt, 0, "OK", output=f"{count} checks processed")


def hello(fmt: str) -> tuple[str, str]:
    if fmt == JSON:
        body = {"status": 0, "message": "OK", "product": "nrdp", "version": PRODUCT_VERSION}
        return json.dumps({"response": body}), "application/json"
    text = ('<?xml version="1.0" encoding="utf-8"?>\n<response>\n  <status>0</status>\n'
            "  <message>OK</message>\n  <product>nrdp</product>\n"
            f"  <version>{PRODUCT_VERSION}</version>\n</response>\n")  # fmt: skip
    return text, "text/xml"


def refusal(exc: NrdpRefusal) -> tuple[str, str]:
    if exc.information:
        return reply(exc.fmt, -1, exc.code, information=exc.information)
    return reply(exc.fmt, -1, exc.code)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
