"""Text from outside (attribute values, exception messages, alert labels) made safe to export.

One rule for every exporter and sink: valid UTF-8, a bounded length, and ``str()`` never
trusted to succeed. Imports nothing of ours.
"""

from __future__ import annotations

MAX_VALUE_LENGTH = 256  # characters of one attribute value


def clean(value: object, limit: int | None = MAX_VALUE_LENGTH) -> str:
    """``value`` as a ``str`` that every exporter accepts; never raises.

    Valid UTF-8 (lone surrogates, e.g. from ``os.fsdecode(b"bad\\xff")``, become U+FFFD),
    bytes decoded as UTF-8 with replacement, at most ``limit`` characters, and a
    placeholder naming the type when ``str()`` itself fails. Short ASCII strings, the usual
    case, are returned as they are.
    """
    if type(value) is str and (limit is None or len(value) <= limit) and value.isascii():
        return value
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            text = bytes(value).decode("utf-8", "replace")
        elif isinstance(value, str):
            text = str.__str__(value)  # a str subclass' own __str__ is not trusted
        else:
            text = str(value)
    except Exception:
        try:
            text = f"<unprintable {type(value).__name__}>"
        except Exception:
            text = "<unprintable>"
    if limit is not None:
        text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``"1 error"``, ``"2 errors"``, ``"0 alerts"``: the count with its noun, in agreement."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def article(word: str) -> str:
    """``"a"`` or ``"an"`` before ``word`` as it is read aloud (``"an 80-action"``, ``"an 11"``)."""
    spoken_vowel = word[:1].lower() in "aeio" or word.startswith(("8", "11", "18"))
    return "an" if spoken_vowel else "a"
