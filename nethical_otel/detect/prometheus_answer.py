"""The shape of Prometheus' ``/api/v1/query`` answer of native histograms, for a typed decoder.

A fleet's answer is tens of megabytes of ``[rule, "lower", "upper", "count"]`` rows. Decoded
by ``msgspec`` into these types, the numbers' strings become floats as they are read (about
four times faster than JSON objects, then strings, then floats). Fields the answer has and
these types do not name are ignored; an answer that does not fit them (an error, a float
that is not one, such as custom buckets' ``"+Inf"``) raises ``ValueError`` and the caller
reads it the general way. Imported by ``PrometheusSource`` when it reads native histograms,
not with the package.
"""

import msgspec


class Point(msgspec.Struct):
    buckets: list[tuple[int, float, float, float]] = []
    sum: float = 0.0


class Row(msgspec.Struct):
    metric: dict[str, str]
    histogram: tuple[float, Point] | None = None  # absent: a float series


class Data(msgspec.Struct):
    result: list[Row]


class Answer(msgspec.Struct):
    status: str
    data: Data


DECODER = msgspec.json.Decoder(Answer, strict=False)  # strict=False: floats from "0.25", "NaN"
