"""Find the first mistake in a TOML text, in our own words, with its line.

The routes file is parsed by tomlkit (it keeps the user's comments and layout), but the
messages a user reads must not depend on a library's exception types or wording, which
change between releases (tomlkit 0.15 raised a different exception for a duplicate key,
with a line one too high). This scanner covers the mistakes people make by hand: a
duplicate key or table, a string that is never closed, a key without ``=``, a value that
is not a TOML value, text after a value, an unclosed bracket. It is not a full TOML
parser; whatever it lets through still goes to the real parser, whose failure is reported
with the line only.

>>> check_toml('a = 1\\na = 2\\n').line
2
>>> check_toml('name = "catalog\\n').message
'string is never closed; add the closing " on the same line'
>>> check_toml('[x]\\nb = 1\\n') is None
True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(
    r"""(?x)
    [+-]?(inf|nan)
    | true | false
    | [+-]?(0|[1-9](_?\d)*)                                  # decimal integer
    | 0x[0-9A-Fa-f](_?[0-9A-Fa-f])* | 0o[0-7](_?[0-7])* | 0b[01](_?[01])*
    | [+-]?(0|[1-9](_?\d)*)(\.\d(_?\d)*)?([eE][+-]?\d(_?\d)*)?   # float
    | \d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?([Zz]|[+-]\d{2}:\d{2})?
    | \d{2}:\d{2}(:\d{2}(\.\d+)?)?
    """
)
_SCALAR_END = re.compile(r"[^\s,\]}#]+")
# A local date-time may have a space between date and time: "1979-05-27 07:32:00".
_DATE_TIME_SPACE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}")


@dataclass(frozen=True)
class TomlProblem:
    """The first mistake found: its 1-based line and what to do about it."""

    line: int
    message: str


class _Found(Exception):  # noqa: N818 - internal control flow, never escapes this module
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.problem = TomlProblem(line, message)


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 1
        self.defined: dict[tuple[str, ...], int] = {}  # key path -> line first set
        self.tables: dict[tuple[str, ...], int] = {}  # [table] headers -> line
        self.array_tables: dict[tuple[str, ...], int] = {}  # [[table]] -> element count
        self.prefix: tuple[str, ...] = ()

    # -- characters -----------------------------------------------------------------------

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def advance(self, n: int = 1) -> None:
        self.line += self.text.count("\n", self.pos, self.pos + n)
        self.pos += n

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces (and comments and newlines when ``newlines``)."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t\r" or (newlines and char == "\n"):
                self.advance()
            elif char == "#" and newlines:
                end = self.text.find("\n", self.pos)
                self.advance((len(self.text) if end < 0 else end) - self.pos)
            else:
                return

    def fail(self, message: str, line: int | None = None) -> _Found:
        return _Found(self.line if line is None else line, message)

    # -- document -------------------------------------------------------------------------

    def document(self) -> None:
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return
            if self.peek() == "[":
                self.header()
            else:
                self.key_value(self.prefix, inline=None)
            self.end_of_line()

    def end_of_line(self) -> None:
        self.skip_blank(newlines=False)
        if self.peek() == "#":
            end = self.text.find("\n", self.pos)
            self.advance((len(self.text) if end < 0 else end) - self.pos)
        if self.pos < len(self.text) and self.peek() != "\n":
            rest = self.text[self.pos:].split("\n", 1)[0].strip()
            raise self.fail(f"unexpected {rest!r} after the value; put one key = value on "
                            "each line (or start a comment with #)")

    def header(self) -> None:
        line = self.line
        array = self.peek(2) == "[["
        self.advance(2 if array else 1)
        self.skip_blank(newlines=False)
        path = self.resolve(self.key())
        self.skip_blank(newlines=False)
        close = "]]" if array else "]"
        if self.peek(len(close)) != close:
            raise self.fail(f"table header is not closed; end it with {close}")
        self.advance(len(close))
        shown = ".".join(part for part in path if not part.isdigit())
        if array:
            if path in self.tables or path in self.defined:
                raise self.fail(f"[[{shown}]] clashes with [{shown}] or {shown} = ... "
                                f"(line {self.tables.get(path) or self.defined[path]}); "
                                "use one form for it")
            count = self.array_tables.get(path, 0)
            self.array_tables[path] = count + 1
            self.prefix = (*path, str(count))
        else:
            if path in self.tables:
                raise self.fail(f"duplicate table [{shown}] (first on line "
                                f"{self.tables[path]}); merge the two into one table")
            if path in self.defined:
                raise self.fail(f"[{shown}] clashes with the key {shown} (line "
                                f"{self.defined[path]}); use one form for it")
            self.tables[path] = line
            self.prefix = path

    def resolve(self, path: tuple[str, ...]) -> tuple[str, ...]:
        """``routes.match`` after ``[[routes]]`` means the last element's ``match``."""
        resolved: list[str] = []
        for index, part in enumerate(path):
            resolved.append(part)
            count = self.array_tables.get(tuple(resolved))
            if count and index < len(path) - 1:
                resolved.append(str(count - 1))
        return tuple(resolved)

    def key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char in ('"', "'"):
                parts.append(self.single_line_string(char))
            else:
                bare = _BARE_KEY.match(self.text, self.pos)
                if not bare:
                    found = self.text[self.pos:].split("\n", 1)[0].strip() or "end of line"
                    raise self.fail(f"expected a key, found {found!r}; keys are letters, "
                                    "digits, _ and -, or quoted")
                parts.append(bare.group())
                self.advance(bare.end() - self.pos)
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.advance()

    def key_value(self, prefix: tuple[str, ...], inline: dict[tuple[str, ...], int] | None,
                  ) -> None:
        line = self.line
        path = self.key()
        self.skip_blank(newlines=False)
        if self.peek() != "=":
            raise self.fail(f"expected = after the key {'.'.join(path)!r}; write "
                            f"{'.'.join(path)} = VALUE")
        self.advance()
        self.skip_blank(newlines=False)
        full = (*prefix, *path)
        seen = self.defined if inline is None else inline
        if full in seen or (inline is None and (full in self.tables
                                                or full in self.array_tables)):
            first = seen.get(full) or self.tables.get(full) or line
            raise self.fail(f'duplicate key "{".".join(path)}" (first set on line {first}); '
                            "each key may appear once per table", line)
        seen[full] = line
        if inline is None:
            for end in range(len(prefix) + 1, len(full)):  # dotted keys define their tables
                seen.setdefault(full[:end], line)
        self.value(full)

    # -- values ---------------------------------------------------------------------------

    def value(self, path: tuple[str, ...]) -> None:
        char = self.peek()
        if self.peek(3) in ('"""', "'''"):
            self.multi_line_string(self.peek(3))
        elif char in ('"', "'"):
            self.single_line_string(char)
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            self.scalar()

    def single_line_string(self, quote: str) -> str:
        start = self.pos
        self.advance()
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\n":
                break
            if char == "\\" and quote == '"':
                self.advance(2)
                continue
            self.advance()
            if char == quote:
                return self.text[start + 1:self.pos - 1]
        raise self.fail(f"string is never closed; add the closing {quote} on the same line")

    def multi_line_string(self, quotes: str) -> None:
        line = self.line
        self.advance(3)
        while self.pos < len(self.text):
            if self.text[self.pos] == "\\" and quotes == '"""':
                self.advance(2)
            elif self.peek(3) == quotes:
                self.advance(3)
                while self.peek() == quotes[0]:  # up to two quotes may end the content
                    self.advance()
                return
            else:
                self.advance()
        raise self.fail(f"multi-line string is never closed; add the closing {quotes}", line)

    def array(self, path: tuple[str, ...]) -> None:
        line = self.line
        self.advance()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                raise self.fail("array is never closed; add the closing ]", line)
            if self.peek() == "]":
                self.advance()
                return
            self.value(path)
            self.skip_blank(newlines=True)
            if self.peek() == ",":
                self.advance()
            elif self.peek() != "]":
                raise self.fail("expected , or ] in the array; separate values with commas")

    def inline_table(self, path: tuple[str, ...]) -> None:
        line = self.line
        self.advance()
        keys: dict[tuple[str, ...], int] = {}
        self.skip_blank(newlines=False)
        if self.peek() == "}":
            self.advance()
            return
        while True:
            self.skip_blank(newlines=False)
            if self.pos >= len(self.text) or self.peek() == "\n":
                raise self.fail("inline table is never closed; add the closing } on the "
                                "same line", line)
            self.key_value(path, inline=keys)
            self.skip_blank(newlines=False)
            if self.pos >= len(self.text) or self.peek() in "\n#":
                raise self.fail("inline table is never closed; add the closing } on the "
                                "same line", line)
            if self.peek() == ",":
                self.advance()
            elif self.peek() == "}":
                self.advance()
                return
            else:
                raise self.fail("expected , or } in the inline table; separate its "
                                "key = value pairs with commas")

    def scalar(self) -> None:
        spaced = _DATE_TIME_SPACE.match(self.text, self.pos)
        token = _SCALAR_END.match(self.text, self.pos + (11 if spaced else 0))
        end = token.end() if token else self.pos
        word = self.text[self.pos:end]
        if not word or not _SCALAR.fullmatch(word):
            shown = word or self.text[self.pos:].split("\n", 1)[0].strip() or "nothing"
            raise self.fail(f"{shown!r} is not a TOML value; quote text (\"{shown}\"), or "
                            "write a number, true/false, [a list] or {a = table}")
        self.advance(end - self.pos)


def check_toml(text: str) -> TomlProblem | None:
    """Return the first mistake in ``text`` (line and fix), or None if none is found."""
    try:
        _Scanner(text).document()
    except _Found as found:
        return found.problem
    return None


__all__ = ["TomlProblem", "check_toml"]
