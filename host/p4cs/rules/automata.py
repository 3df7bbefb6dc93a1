"""Exact decisions over string predicates on one field, by finite automata.

Every string term (equality, `in`, prefix, suffix, substring, regular expression, and their
negations) is the language of strings it accepts, with the rule language's semantics
(`regex` is Python's `re.search`, so an unanchored pattern accepts any string containing a
match; `$` also matches before a final newline). Each language is a Thompson NFA over
code-point intervals; a conjunction of terms and negated terms is explored as the product of
the determinised automata (built lazily), breadth first, over the elementary intervals the
terms' character sets cut the code-point range into. Exploring every reachable product state
without meeting an accepting one proves the conjunction unsatisfiable over all strings; an
accepting state gives a shortest witness.

Unsupported (answered UNKNOWN, left to the SMT solver): back-references, look-arounds,
anchors inside the pattern, flags, and terms that compare numbers.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import deque
from functools import lru_cache

from .model import Atom

try:  # Python 3.11+
    import re._constants as _c  # type: ignore
    import re._parser as _p  # type: ignore
except ImportError:  # pragma: no cover
    import sre_constants as _c  # type: ignore
    import sre_parse as _p  # type: ignore

SAT, UNSAT, UNKNOWN = "sat", "unsat", "unknown"
MAX_CODE = 0x10FFFF
MAX_STATES = 20000  # product states explored before giving up (UNKNOWN)
MAX_REPEAT = 64  # {m,n} bounds unrolled at most this far


class Unsupported(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# character sets: sorted tuples of disjoint (lo, hi) code-point intervals


def _norm(ivs) -> tuple:
    out: list = []
    for lo, hi in sorted(ivs):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def complement(ivs, top: int = MAX_CODE) -> tuple:
    """The intervals of [0, top] not covered by the sorted disjoint intervals `ivs`."""
    out, cur = [], 0
    for lo, hi in ivs:
        if lo > cur:
            out.append((cur, lo - 1))
        cur = hi + 1
    if cur <= top:
        out.append((cur, top))
    return tuple(out)


@lru_cache(maxsize=None)
def _category(name: str) -> tuple:
    """Exact Unicode sets of re's \\d, \\w, \\s for str patterns."""
    test = {"digit": str.isdecimal, "space": str.isspace,
            "word": lambda ch: ch.isalnum() or ch == "_"}[name]
    out, start = [], None
    for i in range(MAX_CODE + 2):
        inside = i <= MAX_CODE and not 0xD800 <= i <= 0xDFFF and test(chr(i))
        if inside and start is None:
            start = i
        elif not inside and start is not None:
            out.append((start, i - 1))
            start = None
    return tuple(out)


_CATEGORIES = {
    _c.CATEGORY_DIGIT: ("digit", False), _c.CATEGORY_NOT_DIGIT: ("digit", True),
    _c.CATEGORY_WORD: ("word", False), _c.CATEGORY_NOT_WORD: ("word", True),
    _c.CATEGORY_SPACE: ("space", False), _c.CATEGORY_NOT_SPACE: ("space", True),
}
_NEWLINE = ((10, 10),)
_ANY = ((0, MAX_CODE),)


def _class(items) -> tuple:
    ivs, negate = [], False
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            ivs.append((av, av))
        elif op is _c.RANGE:
            ivs.append(av)
        elif op is _c.CATEGORY:
            if av not in _CATEGORIES:
                raise Unsupported(str(av))
            name, neg = _CATEGORIES[av]
            ivs.extend(complement(_category(name)) if neg else _category(name))
        else:
            raise Unsupported(str(op))
    s = _norm(ivs)
    return complement(s) if negate else s


# ---------------------------------------------------------------------------------------------
# Thompson NFA


class NFA:
    """States are ints; `edges[s]` lists (charset, target); `eps[s]` epsilon targets."""

    def __init__(self) -> None:
        self.edges: list[list] = []
        self.eps: list[list[int]] = []
        self.start = self.accept = 0

    def state(self) -> int:
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    # fragments are (entry, exit) pairs
    def chars(self, cs: tuple):
        a, b = self.state(), self.state()
        if cs:
            self.edges[a].append((cs, b))
        return a, b

    def empty(self):
        a = self.state()
        return a, a

    def concat(self, frags):
        if not frags:
            return self.empty()
        entry, cur = frags[0]
        for a, b in frags[1:]:
            self.eps[cur].append(a)
            cur = b
        return entry, cur

    def alt(self, frags):
        a, b = self.state(), self.state()
        for x, y in frags:
            self.eps[a].append(x)
            self.eps[y].append(b)
        return a, b

    def star(self, build):
        a, b = self.state(), self.state()
        x, y = build()
        self.eps[a] += [x, b]
        self.eps[y] += [x, b]
        return a, b


def _seq(nfa: NFA, items):
    return nfa.concat([_item(nfa, op, av) for op, av in items])


def _item(nfa: NFA, op, av):
    if op is _c.LITERAL:
        return nfa.chars(((av, av),))
    if op is _c.NOT_LITERAL:
        return nfa.chars(complement(((av, av),)))
    if op is _c.ANY:
        return nfa.chars(complement(_NEWLINE))
    if op is _c.IN:
        return nfa.chars(_class(av))
    if op is _c.BRANCH:
        return nfa.alt([_seq(nfa, b) for b in av[1]])
    if op is _c.SUBPATTERN:
        if av[1] or av[2]:  # inline flags
            raise Unsupported("flags")
        return _seq(nfa, av[-1])
    if op in (_c.MAX_REPEAT, _c.MIN_REPEAT, getattr(_c, "POSSESSIVE_REPEAT", None)):
        lo, hi, sub = av
        if lo > MAX_REPEAT or (hi != _c.MAXREPEAT and hi > MAX_REPEAT):
            raise Unsupported("large repeat")
        parts = [_seq(nfa, sub) for _ in range(lo)]
        if hi == _c.MAXREPEAT:
            parts.append(nfa.star(lambda: _seq(nfa, sub)))
        else:
            for _ in range(hi - lo):
                parts.append(nfa.alt([_seq(nfa, sub), nfa.empty()]))
        return nfa.concat(parts)
    raise Unsupported(str(op))


@lru_cache(maxsize=4096)
def search_nfa(pattern: str) -> NFA:
    """The NFA of {s : re.search(pattern, s)}. Raises Unsupported."""
    try:
        parsed = _p.parse(pattern)
    except (re.error, RecursionError, OverflowError) as e:
        raise Unsupported(str(e))
    if parsed.state.flags & (re.IGNORECASE | re.MULTILINE | re.DOTALL | re.VERBOSE | re.ASCII):
        raise Unsupported("flags")
    items = list(parsed)
    start = end = None
    if items and items[0][0] is _c.AT and items[0][1] in (_c.AT_BEGINNING, _c.AT_BEGINNING_STRING):
        start = items.pop(0)
    if items and items[-1][0] is _c.AT and items[-1][1] in (_c.AT_END, _c.AT_END_STRING):
        end = items.pop()[1]
    nfa = NFA()
    try:
        core = _seq(nfa, items)
    except RecursionError:
        raise Unsupported("too deep")
    frags = []
    if start is None:
        frags.append(nfa.star(lambda: nfa.chars(_ANY)))
    frags.append(core)
    if end is None:
        frags.append(nfa.star(lambda: nfa.chars(_ANY)))
    elif end is _c.AT_END:  # `$`: at the end or before a final newline
        frags.append(nfa.alt([nfa.empty(), nfa.chars(_NEWLINE)]))
    nfa.start, nfa.accept = nfa.concat(frags)
    return nfa


def atom_pattern(a: Atom) -> str | None:
    """A search pattern with exactly the atom's semantics on a present text value, or None
    (numeric comparisons, ordering)."""
    if a.op == "regex":
        return a.value.text
    if a.op == "match":
        return re.escape(a.value.text)
    if a.op == "prefix":
        return "^" + re.escape(a.value.text)
    if a.op == "suffix":
        return re.escape(a.value.text) + r"\Z"
    if a.op in ("==", "!=", "in"):
        if any(l.num is not None for l in a.values):
            return None  # numbers compare by value ("5" == 5.0)
        return "^(?:" + "|".join(re.escape(l.text) for l in a.values) + r")\Z"
    return None


def atom_nfa(a: Atom) -> tuple[NFA, bool]:
    """(NFA, inverted): the atom holds on a present value iff the NFA accepts (xor inverted).
    Raises Unsupported."""
    pat = atom_pattern(a)
    if pat is None:
        raise Unsupported(a.op)
    return search_nfa(pat), a.op == "!="


def supported(a: Atom) -> bool:
    try:
        atom_nfa(a)
        return True
    except Unsupported:
        return False


# ---------------------------------------------------------------------------------------------
# deciding a conjunction


class _Lazy:
    """Subset construction on demand over the symbol partition."""

    def __init__(self, nfa: NFA, bounds: list[int]) -> None:
        self.nfa = nfa
        # for every edge: the set of symbols (elementary intervals) it reads
        self.sym_edges = [[(_symbols(cs, bounds), t) for cs, t in e] for e in nfa.edges]
        self.cache: dict = {}

    def closure(self, states) -> frozenset:
        seen = set(states)
        todo = list(states)
        eps = self.nfa.eps
        while todo:
            s = todo.pop()
            for t in eps[s]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return frozenset(seen)

    def start(self) -> frozenset:
        return self.closure([self.nfa.start])

    def step(self, S: frozenset, sym: int) -> frozenset:
        key = (S, sym)
        r = self.cache.get(key)
        if r is None:
            nxt = [t for s in S for syms, t in self.sym_edges[s] if sym in syms]
            r = self.cache[key] = self.closure(nxt) if nxt else frozenset()
        return r

    def accepts(self, S: frozenset) -> bool:
        return self.nfa.accept in S


def _symbols(cs, bounds: list[int]) -> frozenset:
    out = set()
    for lo, hi in cs:
        i = bisect_right(bounds, lo) - 1
        while i < len(bounds) and bounds[i] <= hi:
            out.add(i)
            i += 1
    return frozenset(out)


def _rep(lo: int, hi: int) -> str:
    """A readable character of [lo, hi]: printable ASCII letters/digits first."""
    for pref in ((ord("a"), ord("z")), (ord("0"), ord("9")), (ord("A"), ord("Z")), (0x21, 0x7E)):
        a, b = max(lo, pref[0]), min(hi, pref[1])
        if a <= b:
            return chr(a)
    c = lo
    while 0xD800 <= c <= 0xDFFF and c < hi:
        c += 1
    return chr(c)


def solve(lits: list[tuple[Atom, bool]], max_states: int = MAX_STATES):
    """Is there a string on which every (atom, positive) holds as given? (SAT, shortest
    string) / (UNSAT, None) / (UNKNOWN, None). Atoms must satisfy `supported`."""
    try:
        autos = [(atom_nfa(a), pos) for a, pos in lits]
    except Unsupported:
        return UNKNOWN, None
    cuts = {0}
    for (nfa, _), _pos in autos:
        for e in nfa.edges:
            for cs, _t in e:
                for lo, hi in cs:
                    cuts.add(lo)
                    if hi < MAX_CODE:
                        cuts.add(hi + 1)
    bounds = sorted(c for c in cuts if c <= MAX_CODE)
    ends = bounds[1:] + [MAX_CODE + 1]
    # readable symbols first, so the shortest witness found first is printable
    order = sorted(range(len(bounds)), key=lambda i: (not (0x21 <= bounds[i] <= 0x7E or bounds[i] <= 0x7E < ends[i]), bounds[i]))
    lazies = [(_Lazy(nfa, bounds), pos != inv) for (nfa, inv), pos in autos]

    def accepting(state) -> bool:
        return all(lz.accepts(S) == want for (lz, want), S in zip(lazies, state))

    start = tuple(lz.start() for lz, _ in lazies)
    prev = {start: None}
    todo = deque([start])
    while todo:
        st = todo.popleft()
        if accepting(st):
            out = []
            while prev[st] is not None:
                st, sym = prev[st]
                out.append(_rep(bounds[sym], ends[sym] - 1))
            return SAT, "".join(reversed(out))
        for sym in order:
            nxt = tuple(lz.step(S, sym) for (lz, _), S in zip(lazies, st))
            if any(want and not S for (_, want), S in zip(lazies, nxt)):
                continue  # a term that must hold can no longer
            if nxt not in prev:
                prev[nxt] = (st, sym)
                if len(prev) > max_states:
                    return UNKNOWN, None
                todo.append(nxt)
    return UNSAT, None
