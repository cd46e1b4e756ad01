"""The comparator: status, headers, JSON structure, text, digests, encodings, bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from typing import Any

import brotli
import pytest

from strangler_proxy.exchange import RecordedResponse
from strangler_proxy.shadow.compare import compare, compare_json, decode_body
from strangler_proxy.shadow.rules import compile_rules

JSON = (("Content-Type", "application/json"),)


def resp(body: Any, status: int = 200, headers: tuple[tuple[str, str], ...] = JSON,
         **kw: Any) -> RecordedResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return RecordedResponse(status, headers, raw, **kw)


def kinds(a: RecordedResponse, b: RecordedResponse, rules: Any = None) -> list[tuple[str, str]]:
    result = compare(a, b, rules or compile_rules())
    return [(d.path, d.kind) for d in result.differences]


def test_identical_responses_match() -> None:
    body = {"id": 1, "tags": ["a", "b"], "nested": {"x": None}}
    assert compare(resp(body), resp(body)).verdict == "match"


def test_status_and_chosen_headers_are_compared() -> None:
    a = resp({}, 200, (("Content-Type", "application/json"), ("Cache-Control", "max-age=60")))
    b = resp({}, 404, (("content-type", "application/json"), ("Cache-Control", "no-cache")))
    assert kinds(a, b) == [("status", "status"), ("headers.cache-control", "header")]


def test_content_type_spacing_and_absolute_location_host_are_normalized() -> None:
    a = resp({}, 302, (("Content-Type", "application/json; charset=utf-8"),
                       ("Location", "http://mono:8000/x/?a=1")))
    b = resp({}, 302, (("Content-Type", "application/json;charset=UTF-8"),
                       ("Location", "/x/?a=1")))
    assert compare(a, b).matched


def test_json_missing_extra_type_value_length_order() -> None:
    a = {"a": 1, "b": 2, "c": "1", "d": [1, 2, 3], "e": [1, 2], "f": True}
    b = {"a": 1, "c": 1, "d": [1, 2], "e": [2, 1], "f": 1, "g": 0}
    assert sorted(kinds(resp(a), resp(b))) == sorted([
        ("$.b", "missing"), ("$.c", "type"), ("$.d", "length"), ("$.e", "order"),
        ("$.f", "type"), ("$.g", "extra")])


def test_bool_and_number_are_different_types_even_though_python_equates_them() -> None:
    assert [d.kind for d in compare_json({"x": True}, {"x": 1})] == ["type"]


def test_int_and_float_with_equal_value_match() -> None:
    assert compare_json({"x": 1}, {"x": 1.0}) == []


def test_ignore_rule_hides_the_value_but_never_a_type_change() -> None:
    rules = compile_rules({"ignore": ["served_at", "items[*].updated_at"]})
    a = {"served_at": "t1", "items": [{"id": 1, "updated_at": "x"}, {"id": 2, "updated_at": "y"}]}
    b = {"served_at": "t2", "items": [{"id": 1, "updated_at": "z"}, {"id": 2, "updated_at": 5}]}
    assert kinds(resp(a), resp(b), rules) == [("$.items[1].updated_at", "type")]


def test_bare_name_is_a_top_level_key_only() -> None:
    rules = compile_rules({"ignore": ["id"]})
    diffs = compare_json({"id": 1, "child": {"id": 1}}, {"id": 2, "child": {"id": 2}}, rules)
    assert [(d.path, d.kind) for d in diffs] == [("$.child.id", "value")]


def test_format_rule_checks_shape_not_value() -> None:
    rules = compile_rules({"formats": {"at": "iso8601", "ref": "uuid", "sku": "regex:^SKU-\\d+$"}})
    a = {"at": "2024-01-01T10:00:00Z", "ref": "9f1c4a1e-1b2c-4d5e-8f90-0123456789ab",
         "sku": "SKU-1"}
    good = {"at": "2025-03-03T11:11:11.5+02:00", "ref": "00000000-0000-4000-8000-000000000000",
            "sku": "SKU-99"}
    bad = {"at": "yesterday", "ref": "nope", "sku": "X-1"}
    assert compare_json(a, good, rules) == []
    assert sorted(d.path for d in compare_json(a, bad, rules)) == ["$.at", "$.ref", "$.sku"]
    assert {d.kind for d in compare_json(a, bad, rules)} == {"format"}


def test_numeric_tolerance_absolute_and_relative() -> None:
    rules = compile_rules({"tolerance": {"price": 0.01, "total": "1%"}})
    assert compare_json({"price": 9.99, "total": 100}, {"price": 10.0, "total": 100.9},
                        rules) == []
    diffs = compare_json({"price": 9.9, "total": 100}, {"price": 10.0, "total": 102}, rules)
    assert [d.path for d in diffs] == ["$.price", "$.total"]


def test_unordered_list_by_key_matches_elements_by_key() -> None:
    rules = compile_rules({"unordered": {"items": "id"}, "ignore": ["items[*].seen"]})
    a = {"items": [{"id": 1, "n": "a", "seen": 1}, {"id": 2, "n": "b", "seen": 1}]}
    b = {"items": [{"id": 2, "n": "B", "seen": 2}, {"id": 1, "n": "a", "seen": 3},
                   {"id": 3, "n": "c"}]}
    assert [(d.path, d.kind) for d in compare_json(a, b, rules)] == [
        ("$.items[id=2].n", "value"), ("$.items[id=3]", "extra")]


def test_unordered_list_without_key_is_a_multiset() -> None:
    rules = compile_rules({"unordered": {"tags": ""}})
    assert compare_json({"tags": ["a", "b", "b"]}, {"tags": ["b", "a", "b"]}, rules) == []
    assert compare_json({"tags": ["a", "b"]}, {"tags": ["b", "b"]}, rules) != []


def test_descendant_pattern_ignores_at_any_depth() -> None:
    rules = compile_rules({"ignore": ["$..etag"]})
    a = {"etag": 1, "x": {"etag": 2, "y": [{"etag": 3, "v": 1}]}}
    b = {"etag": 9, "x": {"etag": 8, "y": [{"etag": 7, "v": 2}]}}
    assert [d.path for d in compare_json(a, b, rules)] == ["$.x.y[0].v"]


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "deflate-raw"])
def test_encoded_bodies_are_decoded_before_comparing(encoding: str) -> None:
    raw = json.dumps({"a": 1}).encode()
    if encoding == "gzip":
        data = gzip.compress(raw)
    elif encoding == "br":
        data = brotli.compress(raw)
    elif encoding == "deflate":
        data = zlib.compress(raw)
    else:
        squash = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        data = squash.compress(raw) + squash.flush()
    name = encoding.split("-")[0]
    encoded = resp(data, headers=(*JSON, ("Content-Encoding", name)))
    assert decode_body(encoded) == (raw, "")
    assert compare(encoded, resp({"a": 1})).matched
    assert not compare(encoded, resp({"a": 2})).matched


def test_corrupt_encoding_is_recorded_not_raised() -> None:
    bad = resp(b"not gzip", headers=(*JSON, ("Content-Encoding", "gzip")))
    assert ("$", "decode") in kinds(resp({"a": 1}), bad)


def test_malformed_and_binary_json_bodies_are_reported_as_such() -> None:
    assert kinds(resp({"a": 1}), resp(b"{not json")) == [("$", "invalid_json")]
    assert kinds(resp({"a": 1}), resp(b"\xff\xfe\x00binary")) == [("$", "invalid_json")]
    assert kinds(resp(b"{bad"), resp(b"{bad")) == []
    assert kinds(resp(b"{bad"), resp(b"{worse")) == [("$", "invalid_json")]


def test_json_versus_html_is_a_type_change() -> None:
    html = resp(b"<html>oops</html>", headers=(("Content-Type", "text/html"),))
    found = kinds(resp({"a": 1}), html)
    assert ("headers.content-type", "header") in found
    assert ("$", "type") in found


def test_text_and_html_are_compared_after_normalizing_whitespace() -> None:
    h = (("Content-Type", "text/html; charset=utf-8"),)
    a = resp(b"<ul>\n  <li>a   b</li>\n\n<li>c</li></ul>", headers=h)
    b = resp(b"<ul><li>a b</li>   <li>c</li></ul>", headers=h)
    c = resp(b"<ul><li>a b</li><li>d</li></ul>", headers=h)
    assert compare(a, b).matched
    diff = compare(a, c).differences[0]
    assert diff.kind == "text"
    assert "<li>c</li>" in str(diff.monolith_value)
    assert "<li>d</li>" in str(diff.service_value)


def test_other_bodies_are_compared_by_digest() -> None:
    h = (("Content-Type", "image/png"),)
    assert compare(resp(b"\x89PNG1", headers=h), resp(b"\x89PNG1", headers=h)).matched
    diff = compare(resp(b"\x89PNG1", headers=h), resp(b"\x89PNG2", headers=h)).differences[0]
    assert (diff.kind, str(diff.monolith_value)[:7]) == ("digest", "sha256:")


def test_service_error_gives_error_verdict() -> None:
    result = compare(resp({}), RecordedResponse(0, (), error="timeout"))
    assert (result.verdict, result.differences[0].service_value) == ("error", "timeout")


def test_truncated_bodies_are_not_parsed() -> None:
    a = resp(b'{"a": ', body_truncated=True)
    assert kinds(a, resp({"a": 1})) == [("$", "truncated")]


def test_differences_are_capped_and_flagged() -> None:
    a = {f"k{i}": i for i in range(500)}
    b = {f"k{i}": -i - 1 for i in range(500)}
    result = compare(resp(a), resp(b), compile_rules(max_differences=20))
    assert len(result.differences) == 20
    assert result.truncated


def test_long_values_are_shortened_in_differences() -> None:
    diff = compare_json({"t": "x" * 5000}, {"t": "y" * 5000})[0]
    assert len(str(diff.monolith_value)) < 300



def _cut(body: bytes, keep: int) -> RecordedResponse:
    """A response as recorded past a cap of ``keep`` bytes: prefix, whole hash, whole size."""
    return RecordedResponse(200, (("Content-Type", "application/octet-stream"),), body[:keep],
                            True, digest=hashlib.sha256(body).hexdigest(), size=len(body))


def test_bodies_past_the_cap_are_compared_by_their_whole_hash() -> None:
    big = bytes(range(256)) * 10_000
    other = big[:-1] + b"!"  # differs only in the last byte, far past the cap
    assert compare(_cut(big, 1000), _cut(big, 1000)).verdict == "match"
    # a recorded answer kept whole (replay) against a capped one: still equal
    whole = RecordedResponse(200, (("Content-Type", "application/octet-stream"),), big)
    assert compare(whole, _cut(big, 1000)).verdict == "match"
    result = compare(_cut(big, 1000), _cut(other, 1000))
    assert result.verdict == "mismatch"
    [difference] = result.differences
    assert difference.kind == "truncated"
    assert str(difference.monolith_value).startswith("differs beyond 1000 bytes")
    early = compare(_cut(big, 1000), _cut(b"?" + big[1:], 1000))
    assert [d.kind for d in early.differences] == ["digest"]


def test_json_nested_too_deep_for_the_walker_is_still_compared() -> None:
    deep_a = b"[" * 600 + b"1" + b"]" * 600
    deep_b = b"[" * 600 + b"2" + b"]" * 600
    assert compare(resp(deep_a), resp(deep_a)).verdict == "match"
    result = compare(resp(deep_a), resp(deep_b))
    assert result.verdict == "mismatch"


def test_numbers_beyond_float_range_are_compared_exactly() -> None:
    assert kinds(resp(b'{"x": 1e400}'), resp(b'{"x": 2e400}')) == [("$.x", "value")]
    assert compare(resp(b'{"x": 1e400}'), resp(b'{"x": 1e400}')).verdict == "match"


def test_json_content_type_with_and_without_utf8_charset_is_the_same() -> None:
    rules = compile_rules({"headers": ["content-type"]})
    plain = resp({"a": 1}, headers=(("Content-Type", "application/json"),))
    utf8 = resp({"a": 1}, headers=(("Content-Type", "application/json; charset=UTF-8"),))
    latin = resp({"a": 1}, headers=(("Content-Type", "text/html; charset=latin-1"),))
    assert compare(plain, utf8, rules).verdict == "match"
    assert compare(plain, latin, rules).verdict == "mismatch"


def test_text_bodies_are_decoded_with_their_charset() -> None:
    latin = RecordedResponse(200, (("Content-Type", "text/plain; charset=iso-8859-1"),),
                             "café".encode("iso-8859-1"))
    utf8 = RecordedResponse(200, (("Content-Type", "text/plain; charset=utf-8"),),
                            "café".encode())
    differences = compare(latin, utf8).differences
    assert [d.path for d in differences] == ["headers.content-type"]  # the bodies are equal
