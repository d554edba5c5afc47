"""The redaction filter every process's logging installs (logs.SecretRedactor): credentials are masked by
their parameter or field name, and the configured secrets wherever they appear (issue 13, item 6)."""

from __future__ import annotations

import json
import logging
import sys

from weixin.logs import SecretRedactor


def redacted(message: str, *args: object, known: tuple[str, ...] = ()) -> str:
    record = logging.LogRecord("test", logging.DEBUG, __file__, 1, message, args or None, None)
    SecretRedactor(known).filter(record)
    return record.getMessage()


def test_query_parameters_that_carry_credentials_are_masked_by_name() -> None:
    line = redacted('%s://%s:%s "GET %s HTTP/1.1" 200 94', "http", "127.0.0.1", 8081,
                    "/sns/oauth2/access_token?appid=wx1&secret=S3cr3tValue&code=0a1b2C3d&grant_type=authorization_code")
    assert "S3cr3tValue" not in line and "0a1b2C3d" not in line
    assert "appid=wx1" in line and "grant_type=authorization_code" in line
    line = redacted("GET /cgi-bin/message/custom/send?access_token=89_AbC-dEf HTTP/1.1")
    assert line == "GET /cgi-bin/message/custom/send?access_token=*** HTTP/1.1"
    for name in ("refresh_token", "ticket", "jsapi_ticket", "password", "token", "signature", "msg_signature",
                 "appsecret"):
        assert redacted(f"x?a=1&{name}=v4lu3&b=2") == f"x?a=1&{name}=***&b=2", name


def test_json_and_python_dict_fields_that_carry_credentials_are_masked_by_name() -> None:
    body = json.dumps({"grant_type": "client_credential", "appid": "wx1", "secret": "S3cr3t\"Value",
                       "access_token": "87_tok", "expires_in": 7200})
    line = redacted("body: %s", body)
    assert "S3cr3t" not in line and "87_tok" not in line and '"expires_in": 7200' in line
    line = redacted("job args: %r", ({"refresh_token": "86_ref", "ticket": "t1ck3t", "openid": "oAbc"},))
    assert "86_ref" not in line and "t1ck3t" not in line and "'openid': 'oAbc'" in line


def test_known_secret_values_are_masked_wherever_they_appear_and_urls_lose_their_password() -> None:
    line = redacted("configured with %s and %s", "AppSecretValue123", "redis://:pa55word@127.0.0.1:6379/0",
                    known=("AppSecretValue123",))
    assert "AppSecretValue123" not in line and "pa55word" not in line
    assert "redis://***@127.0.0.1:6379/0" in line  # as config.redact_url writes it
    # Values too short to be a secret would mask ordinary words; they are left to the name patterns.
    assert redacted("a test line", known=("test", "")) == "a test line"


def test_words_that_only_end_like_a_credential_name_are_kept() -> None:
    for line in ("code exchange failed: errcode=40029", "custom/send: token #a1b2c3 rejected (40001)",
                 "refresh token no longer valid (errcode=42002)", "barcode=978711 passcode"):
        assert redacted(line) == line


def test_tracebacks_and_stack_information_are_masked_too() -> None:
    try:
        raise RuntimeError("Max retries exceeded with url: /cgi-bin/token?grant_type=x&secret=S3cr3tValue")
    except RuntimeError:
        record = logging.LogRecord("test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    record.stack_info = "Stack (most recent call last):\n  request(url='/x?access_token=89_tok')"
    SecretRedactor(()).filter(record)
    text = logging.Formatter("%(message)s").format(record)
    assert "Traceback" in text and "RuntimeError" in text
    assert "S3cr3tValue" not in text and "89_tok" not in text


def test_a_message_whose_arguments_do_not_match_its_format_is_still_masked() -> None:
    record = logging.LogRecord("test", logging.INFO, __file__, 1, "token %s %s", ("x?access_token=89_tok",), None)
    SecretRedactor(()).filter(record)
    assert "89_tok" not in record.getMessage()
