"""Cookies, HTTP framing, routing, schedulers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4cs.csproc.cookies import MAX_AGE_SLOTS, MSS_TABLE, SynCookies, mss_index
from p4cs.csproc.framing import RequestFramer
from p4cs.csproc.routing import Decision, PrefixRouter, Route, parse_target
from p4cs.csproc.schedulers import Server, ServerGroup, make_scheduler
from p4cs.csproc.stats import Stats

K = SynCookies(b"k" * 32)


@settings(max_examples=100, deadline=None)
@given(cip=st.integers(0, 2**32 - 1), cport=st.integers(1, 65535),
       cisn=st.integers(0, 2**32 - 1), mss=st.integers(1, 9000),
       now=st.floats(0, 1e7, allow_nan=False), flip=st.integers(0, 31))
def test_cookie_roundtrip_and_forgery(cip, cport, cisn, mss, now, flip):
    vip = 0x0A000064
    isn = K.make(cip, vip, cport, 80, cisn, mss, now)
    assert K.check(cip, vip, cport, 80, cisn, isn, now) == MSS_TABLE[mss_index(mss)]
    assert K.check(cip, vip, cport, 80, cisn, isn, now + 64) is not None
    assert K.check(cip, vip, cport, 80, cisn, isn, now + 3 * 64) is None
    assert K.check(cip, vip, cport, 80, cisn, isn ^ (1 << flip), now) is None
    assert K.check(cip, vip, cport, 80, (cisn + 1) % 2**32, isn, now) is None
    assert K.check(cip, vip, cport ^ 1, 80, cisn, isn, now) is None
    assert SynCookies(b"x" * 32).check(cip, vip, cport, 80, cisn, isn, now) is None


def test_mss_index_rounds_down():
    assert MSS_TABLE[mss_index(1460)] == 1460 and MSS_TABLE[mss_index(8959)] == 1460
    assert MSS_TABLE[mss_index(8960)] == 8960 and MSS_TABLE[mss_index(9000)] == 8960
    assert MSS_TABLE[mss_index(1459)] == 1452 and MSS_TABLE[mss_index(100)] == 536
    with pytest.raises(ValueError):
        SynCookies(b"short")


def feed_split(data, need_body, cuts, max_header=8192, max_body=65536):
    f = RequestFramer(need_body, max_header, max_body)
    prev = 0
    for c in sorted(cuts) + [len(data)]:
        f.feed(data[prev:c])
        prev = c
    return f


REQ = (b"POST /cgi-bin/purchase.pl HTTP/1.0\r\nHost: viva\r\n"
       b"Content-length: 753\r\n\r\n" + b"b" * 753)


@settings(max_examples=100, deadline=None)
@given(cuts=st.lists(st.integers(0, len(REQ)), max_size=6))
def test_framer_any_split(cuts):
    f = feed_split(REQ, True, cuts)
    assert f.ready and f.content_length == 753 and f.body_bytes == 753


class _AlwaysStop(RequestFramer):
    """The framer without the whole-request-in-one-piece shortcut: it stops the parser at
    the end of the first message by raising, whatever the piece."""
    __slots__ = ()

    def on_message_complete(self):
        self._ends_here = False
        super().on_message_complete()


FIRST = [b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
         b"POST /p HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
         b"POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
         b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
         b"\r\nGET /b HTTP/1.1\r\n\r\n",
         b"GET /c HTTP/1.1\nHost: h\n\n"]
AFTER = [b"", b"GET /2 HTTP/1.1\r\n\r\n", b"garbage\r\n\r\n", b"\r\n\r\n",
         b"POST /2 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"]


def _framer_state(cls, data, need_body, cuts):
    f = cls(need_body, 8192, 65536)
    prev = 0
    for c in sorted(cuts) + [len(data)]:
        f.feed(data[prev:c])
        prev = c
    return (f.ready, f.error, f.headers_done, f.message_done, f.content_length, f.chunked,
            f.body_bytes, f.upgrade)


@settings(max_examples=300, deadline=None)
@given(first=st.sampled_from(FIRST), after=st.sampled_from(AFTER), need_body=st.booleans(),
       cuts=st.lists(st.integers(0, 120), max_size=4))
def test_framer_shortcut_agrees_with_stopping(first, after, need_body, cuts):
    data = first + after
    cuts = [c for c in cuts if c <= len(data)]
    assert (_framer_state(RequestFramer, data, need_body, cuts)
            == _framer_state(_AlwaysStop, data, need_body, cuts))


def test_framer_states():
    f = RequestFramer(True, 8192, 100)
    f.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab")
    assert f.headers_done and not f.ready
    f.feed(b"cde")
    assert f.ready
    f = RequestFramer(False, 8192, 100)
    f.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
    assert f.ready            # headers are enough
    f = RequestFramer(False, 64, 100)
    f.feed(b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 60)
    assert f.error == 431
    f = RequestFramer(False, 64, 100)          # exactly at the limit is fine
    f.feed(b"GET / HTTP/1.1\r\nX: " + b"y" * 41 + b"\r\n\r\n")
    assert f.ready and f.header_fed == 64
    f = RequestFramer(False, 8192, 100)
    f.feed(b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx")
    assert f.ready and f.upgrade
    f = RequestFramer(True, 8192, 100)
    f.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n")   # pipelined
    assert f.ready
    f = RequestFramer(False, 8192, 100)
    f.feed(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
    assert f.error == 400


def test_parse_target():
    assert parse_target(b"GET /a/b?x HTTP/1.1\r\nHOST: WWW.Example.com:8080\r\n\r\n") == \
        (b"/a/b?x", b"www.example.com")
    assert parse_target(b"GET http://h.example/p HTTP/1.1\r\nHost: other\r\n\r\n") == \
        (b"/p", b"h.example")
    assert parse_target(b"GET / HTTP/1.0\r\n\r\n") == (b"/", None)
    assert parse_target(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")[1] == b"[::1]"


def req(path, host=None):
    h = f"Host: {host}\r\n" if host else ""
    return f"GET {path} HTTP/1.1\r\n{h}\r\n".encode()


def test_prefix_router_tiers_and_longest_prefix():
    r = PrefixRouter([
        Route("any-root", "web", "/"),
        Route("any-img", "img", "/img/"),
        Route("a-root", "a", "/", host="a.example"),
        Route("a-api", "api", "/api/", host="a.example"),
        Route("wild", "w", "/", host="*.example"),
        Route("deny", None, "/admin", action="reject"),
        Route("old", "https://new/", "/old", host="a.example", action="redirect"),
    ])
    d = lambda p, h=None: r.decide(req(p, h)).rule  # noqa: E731
    assert d("/img/x.gif") == "any-img" and d("/") == "any-root"
    assert d("/api/v1", "a.example") == "a-api" and d("/x", "A.EXAMPLE") == "a-root"
    assert d("/img/x", "b.example") == "wild"          # host tier beats host-less
    assert d("/img/x", "example") == "any-img"          # *.example excludes the apex
    assert d("/admin/users") == "deny"
    assert r.decide(req("/admin")).action == "reject"
    assert r.decide(req("/old/page", "a.example")) == Decision("old", "redirect",
                                                               "https://new/")
    assert PrefixRouter([Route("x", "g", "/x")]).decide(req("/y")) == Decision()
    with pytest.raises(ValueError):
        Route("bad", "g", "x")
    with pytest.raises(ValueError):
        Route("bad", None, "/")


def picks(sch, n):
    return "".join(sch.pick().name for _ in range(n))


def test_round_robin_skips_down_and_drained():
    s = [Server("a", "10.0.0.1", 80), Server("b", "10.0.0.2", 80),
         Server("c", "10.0.0.3", 80)]
    rr = make_scheduler("rr", s)
    assert picks(rr, 6) == "abcabc"
    s[1].up = False
    assert picks(rr, 4) == "acac"
    s[0].weight = 0
    assert picks(rr, 2) == "cc"
    s[2].up = False
    assert rr.pick() is None


def test_smooth_wrr_is_nginx_sequence():
    s = [Server("a", "10.0.0.1", 80, 5), Server("b", "10.0.0.2", 80, 1),
         Server("c", "10.0.0.3", 80, 1)]
    w = make_scheduler("wrr", s)
    assert picks(w, 14) == "aabacaa" * 2
    s2 = [Server("x", "10.0.0.1", 80, 3), Server("y", "10.0.0.2", 80, 2)]
    seq = picks(make_scheduler("wrr", s2), 500)
    assert seq.count("x") == 300 and "xxxx" not in seq


def test_weighted_least_connections():
    s = [Server("a", "10.0.0.1", 80, 1), Server("b", "10.0.0.2", 80, 3)]
    lc = make_scheduler("wlc", s)
    for _ in range(40):
        lc.pick().active += 1
    assert (s[0].active, s[1].active) == (10, 30)
    s[1].active = 0
    assert lc.pick() is s[1]
    with pytest.raises(ValueError):
        make_scheduler("magic", s)


def test_group_algorithm_override_and_exclude():
    s = [Server("a", "10.0.0.1", 80), Server("b", "10.0.0.2", 80)]
    g = ServerGroup("g", s, "rr")
    assert g.pick(exclude=frozenset([s[0]])) is s[1]
    s[0].active = 5
    assert g.pick("lc") is s[1]
    with pytest.raises(ValueError):
        ServerGroup("empty", [])


def test_stats_export():
    st_ = Stats()
    st_.accepted += 2
    st_.bad_kinds["truncated"] = 1
    d = st_.as_dict()
    assert d["accepted"] == 2 and d["bad_frames_truncated"] == 1 and d["half_bound"] == 0


def test_cookie_key_rotation_keeps_the_previous_keys_for_max_age():
    c = SynCookies(b"a" * 32)
    args = (0x0A000101, 0x0A000064, 40000, 80, 777)
    old = c.make(*args, 1460, 1000.0, 7)
    words = c.key_words()
    c.rotate(b"b" * 32, 1000.0)
    assert c.key_words() != words
    new = c.make(*args, 1460, 1000.0, 7)
    assert new != old and c.check_opts(*args, new, 1000.0) == (1460, 7)
    assert c.check_opts(*args, old, 1000.0 + 64 * MAX_AGE_SLOTS) == (1460, 7)
    assert c.check_opts(*args, old, 1000.0 + 64 * (MAX_AGE_SLOTS + 1)) is None
    assert SynCookies(b"b" * 32).key_words() == c.key_words()


def test_cookies_of_another_controllers_keys_validate_for_max_age():
    other, mine = SynCookies(b"o" * 32), SynCookies(b"m" * 32)
    args = (0x0A000101, 0x0A000064, 40000, 80, 777)
    isn = other.make(*args, 1400, 2000.0, None)
    assert mine.check_opts(*args, isn, 2000.0) is None
    mine.keep_previous(other.key_words(), 2000.0)
    assert mine.check_opts(*args, isn, 2000.0 + 64) == (1400, None)
    assert mine.check_opts(*args, mine.make(*args, 1400, 2000.0, None), 2000.0) == (1400, None)
