"""Identifiers, comments and string literals in generated C and CUDA source.

Nothing a user chose reaches generated code unescaped: names become identifiers through
:func:`mangle` (deterministic: the same names in the same order give the same
identifiers), and free text goes into comments through :func:`comment_text` and into
string literals through :func:`c_string`, neither of which can end the comment or the
literal early, continue a line, or form a trigraph.
"""

from __future__ import annotations

import re

C_KEYWORDS = frozenset("""
auto break case char const continue default do double else enum extern float for goto if
inline int long register restrict return short signed sizeof static struct switch typedef
union unsigned void volatile while _Bool _Complex _Imaginary alignas alignof and and_eq asm
bitand bitor bool catch char8_t char16_t char32_t class compl concept consteval constexpr
constinit const_cast co_await co_return co_yield decltype delete dynamic_cast explicit export
false friend mutable namespace new noexcept not not_eq nullptr operator or or_eq private
protected public reinterpret_cast requires static_assert static_cast template this
thread_local throw true try typeid typename using virtual wchar_t xor xor_eq
""".split())


def identifier(text: str, fallback: str = "v") -> str:
    """``text`` reduced to ``[A-Za-z0-9_]``: every other character becomes ``_``, runs of
    ``_`` collapse to one and leading/trailing ``_`` are dropped (so the result never
    contains the ``__`` that C++ reserves)."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", text)
    ident = re.sub(r"_+", "_", ident).strip("_")
    return ident or fallback


def public_name(name: str) -> str:
    """A NAME usable as the prefix of every exported symbol: a C identifier that is not a
    keyword and does not start with a digit or an underscore."""
    ident = identifier(name, "model")
    if ident[0].isdigit():
        ident = "m" + ident
    if ident in C_KEYWORDS or ident.startswith("sg_"):
        ident = ident + "_fn"
    return ident


class Mangler:
    """Deterministic, collision-free identifiers under a fixed prefix.

    ``mangle("dloss/dw")`` gives ``dloss_dw``; a second name that reduces to the same
    identifier gets ``_2``, ``_3``... in the order the names are mangled.
    """

    def __init__(self) -> None:
        self.used: set[str] = set()

    def mangle(self, text: str, fallback: str = "v") -> str:
        base = identifier(text, fallback)
        name = base
        k = 2
        while name in self.used:
            name = f"{base}_{k}"
            k += 1
        self.used.add(name)
        return name


def comment_text(text: str) -> str:
    """Free text made safe inside ``/* ... */``: printable ASCII only (anything else
    becomes ``?``), no ``*/``, ``/*``, ``??`` (trigraphs) or backslashes."""
    out = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    out = out.replace("\\", "/")
    while "*/" in out or "/*" in out or "??" in out:
        out = out.replace("*/", "* /").replace("/*", "/ *").replace("??", "? ?")
    return out


def c_string(text: str) -> str:
    """A C string literal holding the UTF-8 bytes of ``text``: letters, digits and a few
    safe punctuation marks as they are, every other byte as an octal escape."""
    parts = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        if ch.isalnum() and b < 128 or ch in " _.,:;()[]+-*=<>/|&^%!~{}#@$":
            parts.append(ch)
        else:
            parts.append(f"\\{b:03o}")
    return '"' + "".join(parts) + '"'


__all__ = ["C_KEYWORDS", "Mangler", "c_string", "comment_text", "identifier", "public_name"]
