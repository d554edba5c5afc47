"""The query-string reader: the fast split gives what urllib's parser gives, for any query string."""

from __future__ import annotations

from urllib.parse import parse_qsl

from hypothesis import given
from hypothesis import strategies as st

import handle

query_characters = st.characters(codec="ascii", exclude_characters="\x00")


@given(st.text(query_characters, max_size=200))
def test_any_query_string_reads_as_urllib_reads_it(query: str) -> None:
    assert handle.read_query({"QUERY_STRING": query}) == dict(parse_qsl(query, keep_blank_values=True))


def test_wechat_query_strings() -> None:
    query = "signature=899cf89e&timestamp=1714037059&nonce=486452656&openid=o9AgO5Kd5gg-bXrb&encrypt_type=aes"
    assert handle.read_query({"QUERY_STRING": query})["openid"] == "o9AgO5Kd5gg-bXrb"
    assert handle.read_query({"QUERY_STRING": "echostr=a%2Bb+c"}) == {"echostr": "a+b c"}
