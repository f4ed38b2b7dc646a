"""Personal data kept out of telemetry: error text on its way to a log line or a span loses what it quotes
(pydantic's input values, quoted text, known personal fields by name) and URLs lose their query values. The
dead-letter row keeps the message whole; docs/architecture.md ("Personal data") says what goes where.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# Producer text that error messages echo: pydantic's `input_value=…, input_type=` (any repr, a dict's too), then
# anything quoted (a header's value, a string's repr; one cut off by the end of a line counts too). A quote right
# after a letter or digit is an apostrophe ("doesn't"), not an opening quote.
INPUT_VALUE = re.compile(r"input_value=.*?, input_type=")
QUOTED = re.compile(r"""(?<!\w)(?:'(?:[^'\\\n]|\\.)*(?:'|$)|"(?:[^"\\\n]|\\.)*(?:"|$))""", re.MULTILINE)
# Fields that hold personal data, wherever a message shows them unquoted (`lat=40.1` in a model's repr).
PERSONAL_FIELDS = (
    "name", "customer_name", "first_name", "last_name", "username", "email", "phone", "address",
    "lat", "lon", "latitude", "longitude",
)
_VALUE = r"""'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|[^\s,;)\]}]+"""  # quoted (escapes and all), or a bare token
_FIELD = re.compile(rf"""\b(?P<field>{'|'.join(PERSONAL_FIELDS)})(?P<sep>['"]?\s*[=:]\s*)(?P<value>{_VALUE})""")
_QUERY_VALUE = re.compile(r"(?P<name>[?&][^=&#]*)=[^&#]*")
# Where a traceback names code rather than data: its `File "…", line N, in f` lines and the source line (and
# the caret line) under each.
_FRAME = re.compile(r'^  File "')


def redact(text: str) -> str:
    """`text` (an error message) without the values it quotes or the personal fields it shows."""
    text = INPUT_VALUE.sub(f"input_value={REDACTED}, input_type=", text)
    text = _FIELD.sub(lambda match: f"{match['field']}{match['sep']}{REDACTED}", text)
    return QUOTED.sub(f"'{REDACTED}'", text)


def redact_error(error: BaseException) -> str:
    """`Type: message`, redacted: how a log line or a span status names an exception."""
    try:
        message = str(error)
    except Exception:  # noqa: BLE001 - an exception whose __str__ fails still has a type to name
        message = "<unprintable>"
    return f"{type(error).__name__}: {redact(message)}" if message else type(error).__name__


def redact_traceback(text: str) -> str:
    """A formatted traceback whose exception messages are redacted; its frames (files, lines, code) stay."""
    lines, in_frame = [], False
    for line in text.splitlines(keepends=True):
        if _FRAME.match(line):
            lines.append(line)
            in_frame = True
        elif in_frame and line.startswith("    "):
            lines.append(line)  # the frame's source line, or the carets under it
        else:
            lines.append(redact(line))
            in_frame = False
    return "".join(lines)


def redact_url(url: str) -> str:
    """A URL (or a path with its query) whose query values are gone: `?q=<redacted>&page=<redacted>`."""
    return _QUERY_VALUE.sub(lambda match: f"{match['name']}={REDACTED}", url)
