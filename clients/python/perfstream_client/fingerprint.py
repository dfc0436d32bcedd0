"""The query fingerprint: one ``query_hash`` for one statement, whatever its literals,
spacing, comments, keyword case or driver placeholder style.

This is the specification in docs/producers.md ("Query fingerprint"), rule for rule the same
as the Rust emitter's (crates/perfstream-emit/src/fingerprint/); both must give exactly the
outputs in testdata/fingerprint/vectors.json. It is a token-level normalisation, not a parser:
it never fails. Character classes are ASCII-explicit on purpose (``str.isalpha`` and
``str.lower`` know Unicode, Rust's ASCII methods do not), so both languages agree on every text.
"""

import hashlib
import re
from typing import List, NamedTuple, Optional, Tuple

__all__ = ["Fingerprint", "fingerprint", "hash_normalized"]

# Token kinds.
WORD, QUOTED, VALUE, PUNCT = "word", "quoted", "value", "punct"
Token = Tuple[str, str]
_VALUE: Token = (VALUE, "?")

# Words after which a - or + is a sign, not a subtraction (rule 12).
_SIGN_AFTER = frozenset(
    "and as between by case distinct else from having ilike in is like limit not offset on "
    "or return returning select set then values when where".split()
)
_OP_CHARS = frozenset("+-*/<>=~!@#%^&|")
_OP_SPECIAL = frozenset("~!@#%^&|")
_SPACE = frozenset(" \t\n\r\x0b\x0c")
# Fast paths for the commonest tokens; they match exactly what the per-character rules would.
_SPACE_RUN = re.compile(r"[ \t\n\r\x0b\x0c]+")
_WORD_REST = re.compile(r"[A-Za-z0-9_$\u0080-\U0010FFFF]*")
_NUMBER = re.compile(r"[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9][0-9_]*)?[A-Za-z0-9_]*")


class Fingerprint(NamedTuple):
    hash: str
    """16 lower-case hex digits: the first 8 bytes of SHA-256 of ``normalized``."""
    normalized: str
    """Literals and placeholders as ``?``, lower-case keywords, fixed spacing."""
    query_type: str
    """select, insert, update, delete or other."""


def _ascii_alpha(c: str) -> bool:
    return ("a" <= c <= "z") or ("A" <= c <= "Z")


def _digit(c: Optional[str]) -> bool:
    return c is not None and "0" <= c <= "9"


def _word_start(c: Optional[str]) -> bool:
    return c is not None and (_ascii_alpha(c) or c == "_" or ord(c) >= 128)


def _word_char(c: Optional[str]) -> bool:
    return _word_start(c) or _digit(c) or c == "$"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def _lower(s: str) -> str:
    return s.translate(_ASCII_LOWER)


class _Lexer:
    def __init__(self, sql: str):
        self.s = sql
        self.n = len(sql)
        self.pos = 0
        self.out: List[Token] = []

    def at(self, i: int) -> Optional[str]:
        return self.s[i] if i < self.n else None

    def run(self) -> List[Token]:
        s = self.s
        while self.pos < self.n:
            i = self.pos
            c = s[i]
            if c in _SPACE:
                self.pos = _SPACE_RUN.match(s, i).end()
            elif c == "-" and self.at(i + 1) == "-":
                j = s.find("\n", i)
                self.pos = self.n if j < 0 else j + 1
            elif c == "/" and self.at(i + 1) == "*":
                self.block_comment()
            elif c == "'":
                self.pos = self.string_end(i + 1, False)
                self.out.append(_VALUE)
            elif c in "\"`":
                self.quoted(c)
            elif _digit(c) or (c == "." and _digit(self.at(i + 1))):
                self.number()
            elif _word_start(c):
                self.word()
            elif c == "$":
                self.dollar()
            elif c == "?":
                self.pos += 1
                self.out.append(_VALUE)
            elif c == "%" and self.python_placeholder():
                self.out.append(_VALUE)
            elif c == ":":
                length = 2 if self.at(i + 1) == ":" else 1
                self.pos += length
                self.out.append((PUNCT, ":" * length))
            elif c in _OP_CHARS:
                self.operator()
            else:
                self.pos += 1
                self.out.append((PUNCT, c))
        return self.out

    def block_comment(self) -> None:
        depth = 0
        s = self.s
        while self.pos < self.n:
            if s.startswith("/*", self.pos):
                depth += 1
                self.pos += 2
            elif s.startswith("*/", self.pos):
                depth -= 1
                self.pos += 2
                if depth == 0:
                    return
            else:
                self.pos += 1

    def string_end(self, i: int, backslash: bool) -> int:
        while i < self.n:
            c = self.s[i]
            if backslash and c == "\\":
                i += 2
            elif c == "'":
                if self.at(i + 1) == "'":
                    i += 2
                else:
                    return i + 1
            else:
                i += 1
        return self.n

    def quoted(self, q: str) -> None:
        name = []
        i = self.pos + 1
        while True:
            j = self.s.find(q, i)
            if j < 0:
                name.append(self.s[i:])
                i = self.n
                break
            name.append(self.s[i:j])
            if self.at(j + 1) == q:
                name.append(q)
                i = j + 2
                continue
            i = j + 1
            break
        self.pos = min(i, self.n)
        text = "".join(name)
        plain = _PLAIN_NAME.fullmatch(text) is not None
        self.out.append((QUOTED, text if plain else '"' + text.replace('"', '""') + '"'))

    def number(self) -> None:
        i = _NUMBER.match(self.s, self.pos).end()
        self.pos = i
        self.fold_sign()
        self.out.append(_VALUE)

    def fold_sign(self) -> None:
        out = self.out
        if not out or out[-1] not in ((PUNCT, "-"), (PUNCT, "+")):
            return
        if len(out) < 2:
            ends_value = False
        else:
            kind, text = out[-2]
            if kind in (VALUE, QUOTED):
                ends_value = True
            elif kind == WORD:
                ends_value = text not in _SIGN_AFTER
            else:
                ends_value = text in (")", "]")
        if not ends_value:
            out.pop()

    def word(self) -> None:
        start = self.pos
        i = _WORD_REST.match(self.s, start + 1).end()
        word = _lower(self.s[start:i])
        if self.at(i) == "'" and word in ("e", "n", "b", "x"):
            self.pos = self.string_end(i + 1, word == "e")
            self.out.append(_VALUE)
            return
        self.pos = i
        self.out.append((WORD, word))

    def dollar(self) -> None:
        i = self.pos + 1
        if _digit(self.at(i)):
            j = i
            while _digit(self.at(j)):
                j += 1
            self.pos = j
            self.out.append(_VALUE)
            return
        j = i
        if _word_start(self.at(j)):
            while _word_char(self.at(j)) and self.at(j) != "$":
                j += 1
        if self.at(j) != "$":
            self.pos += 1
            self.out.append((PUNCT, "$"))
            return
        delim = self.s[self.pos : j + 1]
        k = self.s.find(delim, j + 1)
        self.pos = self.n if k < 0 else k + len(delim)
        self.out.append(_VALUE)

    def python_placeholder(self) -> bool:
        i = self.pos
        nxt = self.at(i + 1)
        if nxt == "s":
            self.pos = i + 2
            return True
        if nxt == "(":
            j = i + 2
            while j < self.n and self.s[j] not in ")\n":
                j += 1
            if self.at(j) == ")" and self.at(j + 1) == "s":
                self.pos = j + 2
                return True
        return False

    def operator(self) -> None:
        s = self.s
        start = end = self.pos
        while end < self.n:
            c = s[end]
            if c not in _OP_CHARS or (
                end > start
                and (
                    s.startswith("--", end)
                    or s.startswith("/*", end)
                    or (c == "%" and self.at(end + 1) in ("s", "("))
                )
            ):
                break
            end += 1
        special = any(c in _OP_SPECIAL for c in s[start:end])
        while end - start > 1 and not special and s[end - 1] in "+-":
            end -= 1
        self.pos = end
        self.out.append((PUNCT, s[start:end]))


def _collapse_in_lists(toks: List[Token]) -> None:
    i = 0
    while i + 2 < len(toks):
        if toks[i] == (WORD, "in") and toks[i + 1] == (PUNCT, "("):
            j = i + 2
            values = 0
            while j < len(toks) and toks[j] == _VALUE:
                values += 1
                j += 1
                if j < len(toks) and toks[j] == (PUNCT, ","):
                    j += 1
                else:
                    break
            if values > 1 and j < len(toks) and toks[j] == (PUNCT, ")"):
                del toks[i + 3 : j]
        i += 1


def _closing(toks: List[Token], open_: int) -> Optional[int]:
    depth = 0
    for k in range(open_, len(toks)):
        if toks[k] == (PUNCT, "("):
            depth += 1
        elif toks[k] == (PUNCT, ")"):
            depth -= 1
            if depth == 0:
                return k
    return None


def _collapse_values_rows(toks: List[Token]) -> None:
    i = 0
    while i + 1 < len(toks):
        if toks[i] == (WORD, "values") and toks[i + 1] == (PUNCT, "("):
            close = _closing(toks, i + 1)
            if close is not None:
                row = toks[i + 1 : close + 1]
                nxt = close + 1
                while (
                    nxt < len(toks)
                    and toks[nxt] == (PUNCT, ",")
                    and toks[nxt + 1 : nxt + 1 + len(row)] == row
                ):
                    del toks[nxt : nxt + 1 + len(row)]
                i = close
        i += 1


_GLUE_AFTER = frozenset(["(", "[", ".", "::"])
_GLUE_BEFORE = frozenset([")", "[", "]", ",", ".", ";", "::"])


def _render(toks: List[Token]) -> str:
    out = []
    prev = None
    for kind, text in toks:
        if prev is not None and prev not in _GLUE_AFTER and not (kind == PUNCT and text in _GLUE_BEFORE):
            out.append(" ")
        out.append(text)
        prev = text
    return "".join(out)


_VERBS = frozenset(["select", "insert", "update", "delete"])


def _query_type(toks: List[Token]) -> str:
    first = next((text for kind, text in toks if kind == WORD), None)
    if first is None:
        return "other"
    if first != "with":
        return first if first in _VERBS else "other"
    depth = 0
    for kind, text in toks:
        if (kind, text) == (PUNCT, "("):
            depth += 1
        elif (kind, text) == (PUNCT, ")"):
            depth -= 1
        elif kind == WORD and depth == 0 and text in _VERBS:
            return text
    return "other"


def hash_normalized(normalized: str) -> str:
    """The hash of an already normalised text."""
    return hashlib.sha256(normalized.encode("utf-8")).digest()[:8].hex()


def fingerprint(sql: str) -> Fingerprint:
    """The fingerprint of ``sql``."""
    toks = _Lexer(sql).run()
    _collapse_in_lists(toks)
    _collapse_values_rows(toks)
    while toks and toks[-1] == (PUNCT, ";"):
        toks.pop()
    normalized = _render(toks)
    return Fingerprint(hash_normalized(normalized), normalized, _query_type(toks))
