"""Parse rule files (lark, LALR) into the model, with errors that point at line:column."""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from p4cs import capabilities

from .model import (
    FUNC_OPS,
    Action,
    Atom,
    Const,
    FieldNameError,
    If,
    Lit,
    Rule,
    as_number,
    bitmatch_name,
    canonical_field,
    field_kind,
    mk_and,
    mk_not,
    mk_or,
)

_GRAMMAR = (Path(__file__).with_name("grammar.lark")).read_text()
_PARSER = Lark(_GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

#: Size limits (docs/rules.md, "Limits"): nested `if` statements, nested condition groups
#: (parenthesised alternations of `&&` / `||` and `!`), digits of a number literal. Chains of
#: `&&` / `||` terms are flattened and have no limit.
MAX_IF_NESTING = 64
MAX_COND_NESTING = 64
MAX_NUMBER_DIGITS = 100


@dataclass(frozen=True)
class Problem:
    """One error in a rule file."""

    file: str
    line: int
    col: int
    message: str
    source_line: str = ""
    hint: str = ""

    def __str__(self) -> str:
        name = self.file if self.file.isprintable() else repr(self.file)[1:-1]  # one line
        out = f"{name}:{self.line}:{self.col}: error: {self.message}"
        if self.source_line:
            out += "\n    " + self.source_line.expandtabs(1).rstrip("\n")
            out += "\n    " + " " * (self.col - 1) + "^"
        if self.hint:
            out += f"\n    hint: {self.hint}"
        return out


class RuleError(Exception):
    """A rule file could not be loaded. `problems` lists every error found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @property
    def messages(self) -> list[str]:
        return [str(p) for p in self.problems]


class _SemanticError(Exception):
    def __init__(self, message: str, line: int, col: int, hint: str = ""):
        super().__init__(message)
        self.message, self.line, self.col, self.hint = message, line, col, hint


STICKY_WORDS = capabilities.STICKINESS
ACTIONS = capabilities.ACTIONS
ALGORITHMS = tuple(capabilities.ALGORITHMS)
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "'": "'", "\\": "\\"}


def _unquote(tok: str) -> str:
    if tok[0] in "\u201c":
        return tok[1:-1]
    body = tok[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


def _pos(tok) -> tuple[int, int]:
    return getattr(tok, "line", 0) or 0, getattr(tok, "column", 0) or 0


class _Build:
    """Builds the model from the parse tree, bottom-up and without recursion (`build`)."""

    # --- values -----------------------------------------------------------------------------
    def value(self, meta, ch):
        tok: Token = ch[0]
        if tok.type == "STRING":
            return (Lit(_unquote(tok)), tok)
        if tok.type == "NUMBER":
            s = str(tok)
            digits = sum(c.isdigit() for c in s)
            if digits > MAX_NUMBER_DIGITS:
                raise _SemanticError(f"number literal too long ({digits} digits; at most "
                                     f"{MAX_NUMBER_DIGITS})", *_pos(tok))
            num = int(s, 16) if s.lower().startswith("0x") else as_number(s)
            return (Lit(s, num=num), tok)
        return (Lit(str(tok)), tok)  # IPNET / BAREWORD: text, interpreted per field kind

    def field(self, meta, ch):
        tok = ch[0]
        try:
            return (canonical_field(str(tok)), tok)
        except FieldNameError as e:
            hint = ""
            base = str(tok).split(".")[0].lower()
            cands = difflib.get_close_matches(str(tok).lower(), _FIELD_SUGGEST, n=1, cutoff=0.6)
            if not cands:
                cands = difflib.get_close_matches(base, _FAMILY_SUGGEST, n=1, cutoff=0.6)
                cands = [c + ".<name>" for c in cands]
            if cands:
                hint = f"did you mean '{cands[0]}'?"
            else:
                hint = ("fields are url, path, query, method, version, host, header.<Name>, "
                        "cookie.<name>, xml.<tags>, form.<field>, json.<path>, tls.sni, "
                        "tls.session_id, tls.alpn, smtp.from, smtp.to, smtp.helo, pop3.user, "
                        "imap.user, client.ip, "
                        "client.port, vip, vip.port, bitmatch(offset, length, mask)")
            raise _SemanticError(str(e), *_pos(tok), hint)

    def bitmatch(self, meta, ch):
        vals = []
        for t in ch:
            s = str(t)
            if len(s) > MAX_NUMBER_DIGITS:
                raise _SemanticError("bitmatch argument too long", *_pos(t))
            try:
                v = int(s, 16) if s.lower().startswith("0x") else int(s)
            except ValueError:
                raise _SemanticError(f"bitmatch arguments must be integers, got {s}", *_pos(t))
            vals.append(v)
        off, length, mask = vals
        if off < 0 or length < 1 or length > 64 or mask < 0 or mask >= (1 << length):
            raise _SemanticError(
                "invalid bitmatch(offset, length, mask)", *_pos(ch[0]),
                "offset and length are in bits, 1 <= length <= 64, mask fits in length bits")
        return (bitmatch_name(off, length, mask), ch[0])

    # --- conditions --------------------------------------------------------------------------
    def _lit_for(self, fname: str, lit: Lit, tok) -> Lit:
        kind = field_kind(fname)
        if kind == "ip":
            try:
                net = ipaddress.ip_network(lit.text, strict=False)
            except ValueError:
                raise _SemanticError(f"{lit.text!r} is not an IP address or CIDR prefix",
                                     *_pos(tok), f"{fname} is compared with addresses such as "
                                     "10.0.0.0/8 or \"2001:db8::/32\"")
            return Lit(lit.text, net=net)
        if kind == "int" and lit.num is None:
            raise _SemanticError(f"{fname} is a number; {lit.show()} is not", *_pos(tok))
        return lit

    def cmp(self, meta, ch):
        (fname, ftok), op, (lit, vtok) = ch[0], str(ch[1]), ch[2]
        if field_kind(fname) == "ip" and op not in ("==", "!="):
            raise _SemanticError(f"operator {op} does not apply to {fname}", *_pos(ch[1]),
                                 "addresses support ==, != and in [...] (CIDR membership)")
        lit = self._lit_for(fname, lit, vtok)
        return Atom(fname, op, (lit,))

    def in_(self, meta, ch):
        fname, ftok = ch[0]
        lits = tuple(self._lit_for(fname, lit, tok) for lit, tok in ch[1:])
        return Atom(fname, "in", lits)

    def func(self, meta, ch):
        fn = str(ch[0].children[0]) if isinstance(ch[0], Tree) else str(ch[0])
        (fname, ftok), (lit, vtok) = ch[1], ch[2]
        if field_kind(fname) == "ip":
            raise _SemanticError(f"{fn}() does not apply to {fname}", *_pos(ftok),
                                 "use client.ip == 10.0.0.0/8 for prefixes of addresses")
        lit = Lit(lit.text)  # string functions compare text, never numbers
        if fn == "regex":
            try:
                re.compile(lit.text)
            except re.error as e:
                raise _SemanticError(f"invalid regular expression: {e}", *_pos(vtok))
        return Atom(fname, fn, (lit,))

    def const(self, meta, ch):
        return Const(str(ch[0]) == "true")

    def and_(self, meta, ch):
        return mk_and(*ch)

    def or_(self, meta, ch):
        return mk_or(*ch)

    def not_(self, meta, ch):
        return mk_not(ch[0])

    # --- statements --------------------------------------------------------------------------
    def arg(self, meta, ch):
        tok = ch[0]
        if tok.type == "STRING":
            return ("text", _unquote(tok), tok)
        return ("word", str(tok), tok)

    def action_stmt(self, meta, ch):
        name_tok = ch[0]
        name = str(name_tok)
        args = ch[1:]
        line, col = _pos(name_tok)
        canon = {a.lower(): a for a in ACTIONS}.get(name.lower())
        if canon is None:
            cands = difflib.get_close_matches(name, ACTIONS, n=1, cutoff=0.5)
            raise _SemanticError(
                f"unknown action {name!r}", line, col,
                (f"did you mean '{cands[0]}'? " if cands else "") + "actions: " + ", ".join(ACTIONS))

        def need(n_min: int, n_max: int, usage: str):
            if not (n_min <= len(args) <= n_max):
                raise _SemanticError(f"{canon} takes {usage}", line, col, f"usage: {canon}{usage and '(' + usage + ')' or ''}")

        def word(a, what: str) -> str:
            kind, v, tok = a
            if not v:
                raise _SemanticError(f"empty {what}", *_pos(tok))
            return v

        if canon == "routeTo":
            need(1, 2, "group[, STICKY|NONSTICKY]")
            sticky = True
            if len(args) == 2:
                w = args[1][1].upper()
                if w not in STICKY_WORDS:
                    raise _SemanticError(f"expected STICKY or NONSTICKY, got {args[1][1]!r}",
                                         *_pos(args[1][2]),
                                         "accepted: STICKY, NONSTICKY, NOSTICKY, NON_STICKY")
                sticky = STICKY_WORDS[w]
            return Action("routeTo", word(args[0], "group name"), sticky=sticky, line=line)
        if canon == "forward":
            need(1, 2, "server[, STICKY|NONSTICKY]")
            sticky = True
            if len(args) == 2:
                w = args[1][1].upper()
                if w not in STICKY_WORDS:
                    raise _SemanticError(f"expected STICKY or NONSTICKY, got {args[1][1]!r}",
                                         *_pos(args[1][2]))
                sticky = STICKY_WORDS[w]
            return Action("forward", word(args[0], "server name"), sticky=sticky, line=line)
        if canon == "loadBalance":
            need(2, 2, "group, algorithm")
            algo = args[1][1]
            try:
                canon_algo = capabilities.algorithm(algo)
            except ValueError as e:
                raise _SemanticError(str(e), *_pos(args[1][2]),
                                     "algorithms: " + ", ".join(ALGORITHMS)) from None
            return Action("loadBalance", word(args[0], "group name"), algorithm=canon_algo,
                          line=line)
        if canon == "reject":
            need(0, 0, "")
            return Action("reject", None, line=line)
        if canon == "redirect":
            need(1, 1, "url")
            return Action("redirect", word(args[0], "URL"), sticky=False, line=line)
        # log(...)
        if not args:
            raise _SemanticError("log takes at least one argument", line, col,
                                 'usage: log("text", field, ...)')
        out = []
        for kind, v, tok in args:
            if kind == "text":
                out.append(("text", v))
            else:
                try:
                    out.append(("field", canonical_field(v)))
                except FieldNameError as e:
                    raise _SemanticError(str(e), *_pos(tok), "log arguments are \"text\" or fields")
        return Action("log", None, log_args=tuple(out), line=line)

    def block(self, meta, ch):
        return tuple(ch)

    def single(self, meta, ch):
        return (ch[0],)

    def if_stmt(self, meta, ch):
        cond = ch[1]
        then = ch[2]
        orelse = ch[4] if len(ch) > 4 else None
        return If(cond, then, orelse, line=_pos(ch[0])[0])

    def label(self, meta, ch):
        name = " ".join(str(t) for t in ch)
        return ("label", name, ch[0])

    def _rule(self, meta, ch, stmt):
        label = ch[0] if len(ch) == 2 else None
        return (label, (stmt,), meta)

    def rule_if(self, meta, ch):
        return self._rule(meta, ch, ch[-1])

    def rule_action(self, meta, ch):
        return self._rule(meta, ch, ch[-1])

    def start(self, meta, ch):
        return list(ch)

    # --- the walk ----------------------------------------------------------------------------
    _CHAINS = ("or_", "and_")

    def build(self, root: Tree):
        """Transform `root` bottom-up with an explicit stack. `a || b || c` (a left-deep
        chain in the tree) becomes one n-ary node; nesting beyond the limits is an error."""
        out: list = []
        # (node, if-depth, condition-depth, expanded?)
        todo: list = [(root, 0, 0, False)]
        while todo:
            node, ifs, conds, expanded = todo.pop()
            if not isinstance(node, Tree):
                out.append(node)
                continue
            if expanded:
                k = len(out) - len(node.children)
                ch = out[k:]
                del out[k:]
                fn = getattr(self, node.data, None)
                out.append(fn(node.meta, ch) if fn is not None else Tree(node.data, ch, node.meta))
                continue
            data = node.data
            if data in self._CHAINS:
                items = []
                cur = node
                while isinstance(cur, Tree) and cur.data == data:
                    items.append(cur.children[1])
                    cur = cur.children[0]
                items.append(cur)
                items.reverse()
                node = Tree(data, items, node.meta)
            if data in ("or_", "and_", "not_"):
                conds += 1
                if conds > MAX_COND_NESTING:
                    raise _SemanticError(f"condition nested too deeply (more than "
                                         f"{MAX_COND_NESTING} levels of groups)", *_meta_pos(node))
            elif data == "if_stmt":
                ifs += 1
                conds = 0
                if ifs > MAX_IF_NESTING:
                    raise _SemanticError(f"if statements nested too deeply (more than "
                                         f"{MAX_IF_NESTING} levels)", *_meta_pos(node))
            todo.append((node, ifs, conds, True))
            for c in reversed(node.children):
                todo.append((c, ifs, conds, False))
        return out[0]


def _meta_pos(node: Tree) -> tuple[int, int]:
    meta = node.meta
    return (meta.line, meta.column) if not meta.empty else (0, 0)


_FIELD_SUGGEST = ["url", "path", "query", "method", "version", "host", "tls.sni",
                  "tls.session_id", "tls.alpn", "smtp.from", "smtp.to", "smtp.helo",
                  "pop3.user", "imap.user",
                  "client.ip", "client.port", "vip", "vip.port"]
_FAMILY_SUGGEST = ["header", "cookie", "xml", "form", "json"]

_TERM_NAMES = {
    "LPAR": "'('", "RPAR": "')'", "LBRACE": "'{'", "RBRACE": "'}'", "LSQB": "'['",
    "RSQB": "']'", "SEMICOLON": "';'", "COMMA": "','", "COLON": "':'", "CMP_OP": "a comparison (== != < <= > >=)",
    "FIELD": "a field", "STRING": "a string", "NUMBER": "a number", "IPNET": "an address",
    "BAREWORD": "a word", "NAME": "a name", "ARGWORD": "an argument", "IF": "'if'",
    "ELSE": "'else'", "MATCH": "match(", "PREFIX": "prefix(", "SUFFIX": "suffix(", "REGEX": "regex(", "TRUE": "true", "FALSE": "false",
    "BANG": "'!'", "OROR": "'||'", "ANDAND": "'&&'", "INT": "a number", "IN": "'in'",
    "BITMATCH": "'bitmatch'", "$END": "end of file",
}


def _term_name(t: str) -> str:
    if t in _TERM_NAMES:
        return _TERM_NAMES[t]
    try:
        pat = _PARSER.get_terminal(t).pattern
        return repr(pat.value) if pat.type == "str" else t
    except KeyError:
        return t


def _syntax_problem(e: UnexpectedInput, text: str, fname: str) -> Problem:
    lines = text.splitlines() or [""]
    line = getattr(e, "line", 1) or 1
    col = getattr(e, "column", 1) or 1
    if isinstance(e, UnexpectedEOF) or (isinstance(e, UnexpectedToken) and e.token.type == "$END"):
        line, col = len(lines), len(lines[-1]) + 1
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    expected = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or [])
    exp_txt = ", ".join(dict.fromkeys(_term_name(t) for t in expected))
    hint = ""
    if isinstance(e, UnexpectedCharacters):
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        msg = f"unexpected character {ch!r}"
        rest = text[e.pos_in_stream:e.pos_in_stream + 2]
        if ch == "=" :
            hint = "use '==' to compare"
        elif rest == "&&" or ch == "&":
            hint = "use '&&' between terms"
        elif ch == "|":
            hint = "use '||' between terms"
        elif ch in "\"'":
            hint = "unterminated string?"
        elif exp_txt:
            hint = f"expected {exp_txt}"
    elif isinstance(e, UnexpectedToken) and e.token.type != "$END":
        msg = f"unexpected {e.token.value!r}"
        if e.token.value in ("=", "&", "|"):
            hint = {"=": "use '==' to compare", "&": "use '&&' between terms",
                    "|": "use '||' between terms"}[e.token.value]
        elif "RPAR" in expected:
            hint = "missing ')'?"
        elif "RBRACE" in expected and e.token.type in ("NAME", "IF"):
            hint = "missing ';' or '}'?"
        elif "CMP_OP" in expected:
            hint = "a term is `field OP value`, `func(field, value)` or `field in [v1, v2]`"
        elif e.token.type == "FIELD" and "LPAR" in expected:
            hint = "a condition must be in parentheses: if (cond) { action; }"
        elif exp_txt:
            hint = f"expected {exp_txt}"
    else:
        msg = "unexpected end of file"
        hint = f"expected {exp_txt}" if exp_txt else "missing '}' or ')'?"
    return Problem(fname, line, col, msg, src, hint)


def parse_rule_text(text: str, fname: str = "<rules>") -> list[Rule]:
    """Parse rule text. Raises RuleError listing every problem (syntax: the first one)."""
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as e:
        raise RuleError([_syntax_problem(e, text, fname)]) from None
    lines = text.splitlines()
    rules: list[Rule] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    # Transform rule by rule so one semantic error does not hide the others.
    for n, sub in enumerate(tree.children, 1):
        try:
            label, body, meta = _Build().build(Tree("start", [sub]))[0]
        except _SemanticError as err:
            src = lines[err.line - 1] if 0 < err.line <= len(lines) else ""
            if len(src) > 200:  # a very long line: the message alone
                src = ""
            problems.append(Problem(fname, err.line, err.col, err.message, src, err.hint))
            continue
        if label is not None:
            name = label[1]
            line, col = _pos(label[2])
            if name in seen:
                src = lines[line - 1] if 0 < line <= len(lines) else ""
                problems.append(Problem(fname, line, col, f"rule name {name!r} is already used",
                                        src, f"first defined on line {seen[name]}"))
                continue
            seen[name] = line
        else:
            name = f"rule{n}"
            line, col = meta.line, meta.column
        source = text[meta.start_pos:meta.end_pos] if meta and not meta.empty else ""
        rules.append(Rule(name, body, meta.line, meta.column, source))
    # auto-named rules must not collide with explicit labels
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        for r in rules:
            if names.count(r.name) > 1 and r.name.startswith("rule") and r.name not in seen:
                src = lines[r.line - 1] if 0 < r.line <= len(lines) else ""
                problems.append(Problem(fname, r.line, r.col, f"unnamed rule gets the name {r.name!r}, which a label already uses", src, "give the rule an explicit name"))
    if problems:
        raise RuleError(problems)
    return rules


def parse_rule_file(path: str | Path) -> list[Rule]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise RuleError([Problem(str(path), 0, 0, f"cannot read rule file: {e.strerror or e}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RuleError([Problem(str(path), line, 1, "rule file is not valid UTF-8")]) from None
    return parse_rule_text(text, str(path))
