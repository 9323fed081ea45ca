"""The autostart and browser-policy writers escape by each file format's rules (issue 17,
item 8): fuzzed, and read back by parsers written here from the formats' specifications (not
by the writers' code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cert_agent.desktop.autostart import windows_run_reg, xdg_autostart_entry
from cert_agent.desktop.browser_policy import windows_policy_reg
from cert_agent.desktop.fileformats import desktop_exec, reg_string

ARGUMENT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


def parse_desktop_exec(value: str) -> list[str]:
    """Desktop Entry Specification: undo the string escapes, then split the Exec arguments."""
    unescaped, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            unescaped.append(
                {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(value[i + 1], "\\" + value[i + 1])
            )
            i += 2
        else:
            unescaped.append(value[i])
            i += 1
    text = "".join(unescaped)
    arguments, current, quoted, escaped, started = [], [], False, False, False
    for c in text:
        if escaped:
            current.append(c)
            escaped = False
        elif quoted and c == "\\":
            escaped = True
        elif c == '"':
            quoted, started = not quoted, True
        elif c == " " and not quoted:
            if current or started:
                arguments.append("".join(current))
            current, started = [], False
        else:
            current.append(c)
    if current or started:
        arguments.append("".join(current))
    return [argument.replace("%%", "%") for argument in arguments]


def parse_reg_string(text: str) -> str:
    assert text.startswith('"') and text.endswith('"')
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        if body[i] == "\\":
            out.append(body[i + 1])
            i += 2
        else:
            assert body[i] != '"', "an unescaped quote ends the string early"
            out.append(body[i])
            i += 1
    return "".join(out)


@given(st.lists(ARGUMENT, min_size=1, max_size=5).filter(lambda c: c[0] != ""))
def test_desktop_exec_reads_back_as_the_same_command_or_is_refused(command: list[str]) -> None:
    try:
        value = desktop_exec(command)
    except ValueError:
        assert any((ord(c) < 0x20 and c not in "\n\t\r") or c == "\x7f" for a in command for c in a)
        return
    assert "\n" not in value and "\r" not in value  # one line of the file
    assert parse_desktop_exec(value) == command
    assert "%" not in value.replace("%%", "")  # no field code can be formed


@given(ARGUMENT)
def test_reg_strings_read_back_or_are_refused(value: str) -> None:
    try:
        text = reg_string(value)
    except ValueError:
        assert "\r" in value or "\n" in value
        return
    assert parse_reg_string(text) == value


def test_a_percent_and_a_quote_in_the_python_path_survive_the_desktop_entry() -> None:
    command = ['/opt/cert agent/100%/py"thon', "-m", "cert_agent", "serve"]
    entry = xdg_autostart_entry(command)
    (line,) = [line for line in entry.splitlines() if line.startswith("Exec=")]
    assert parse_desktop_exec(line.removeprefix("Exec=")) == command


def test_the_reg_writers_escape_quotes_and_backslashes() -> None:
    text = windows_run_reg(['C:\\Program Files\\cert"agent\\python.exe', "-m", "cert_agent", "serve"])
    (line,) = [line for line in text.split("\r\n") if line.startswith('"cert-agent"=')]
    assert (
        parse_reg_string(line.split("=", 1)[1]) == '"C:\\Program Files\\cert\\"agent\\python.exe" -m cert_agent serve'
    )
    policy = windows_policy_reg(["https://etax.example.com"])
    assert '"1"="https://etax.example.com"' in policy


@pytest.mark.parametrize(
    ("origin", "says"),
    [
        ('https://a"b.test', "not a valid host name"),
        ("https://a b.test", "not a valid host name"),
        ("https://a\\b.test", "not a valid host name"),
        ("https://a,b.test", "not a valid host name"),
        ("https://ｅｔａｘ.example", "not a valid host name"),
        ("https://etax.example:0", "port must be from 1 to 65535"),
        ("https://ev\til.te\nst", "not a valid host name"),
        ("https://etax.example/login", "not an origin"),
    ],
)
def test_origins_no_browser_can_send_are_refused_with_what_is_wrong(origin: str, says: str) -> None:
    from cert_agent.agent.origins import OriginConfigError, normalize_origin

    with pytest.raises(OriginConfigError, match=says):
        normalize_origin(origin)


def test_a_chinese_domain_is_configured_in_the_form_browsers_send() -> None:
    from cert_agent.agent.origins import normalize_origin

    assert normalize_origin("https://税务.中国") == "https://xn--zfr703g.xn--fiqs8s"
