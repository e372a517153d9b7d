import gzip

import pytest

from pipelines.ingest.http import TooLargeError, dechunk, read_response, split_http
from pipelines.ingest.warc import _crawler_record, target_uri


def test_lf_only_headers_end_at_the_first_blank_line():
    http = split_http(b"HTTP/1.0 200 OK\nContent-Type: text/html; charset=EUC-JP\nX: y\n\n<html>a: b\n\nc</html>")
    assert http.status == 200 and http.content_type == "text/html" and http.charset == "euc-jp"
    assert http.body == b"<html>a: b\n\nc</html>"


def test_crlf_headers_and_folded_lines():
    http = split_http(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html;\r\n  charset=utf-8\r\n\r\nbody")
    assert http.status == 404 and http.charset == "utf-8" and http.body == b"body"
    assert split_http(b"not http") is None


def test_chunked_bodies_and_the_already_dechunked_fallback():
    assert dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n") == b"hello world"
    assert dechunk(b"<!doctype html>") is None
    http = read_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n<!doctype html><p>x</p>", limit=None)
    assert http.dechunk_fallback and http.body == b"<!doctype html><p>x</p>"


def test_content_encoding_is_undone_within_the_limit():
    body = gzip.compress(b"a" * 1000)
    raw = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + body
    assert read_response(raw, limit=2000).body == b"a" * 1000
    with pytest.raises(TooLargeError):
        read_response(raw, limit=500)


def test_crawler_records_and_bracketed_uris():
    assert target_uri(" <http://example.com/> ") == "http://example.com/"
    assert _crawler_record("metadata://gnu.org/software/wget/warc/wget.log") == "crawler_log"
    assert _crawler_record("urn:X-wpull:log") == "crawler_log" and _crawler_record("dns:example.com") == "dns"
    assert _crawler_record("http://example.com/robots.txt") == "robots_txt"
    assert _crawler_record("http://example.com/robots.txt.html") is None and _crawler_record("https://example.com/") is None
