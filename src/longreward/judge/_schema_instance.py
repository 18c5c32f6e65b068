"""Deterministic instances of a JSON schema, for the offline dry-run provider and the test double.

This is not an LLM and not a judgment: given a schema and a seeded RNG it builds a value that
validates against the schema (the subset pydantic emits: objects, arrays, enums, const, numbers
with bounds, strings with lengths, ``$ref``/``$defs``, ``anyOf``/``oneOf``/``allOf``, nullables).
Strings are drawn from the caller's sentences, so that e.g. a faithfulness "statements" list
looks like statements of the answer being judged.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")

_FALLBACK_SENTENCES = [
    "This is a deterministic placeholder sentence.",
    "The dry-run provider produced this text without a model.",
    "No judgment was made here.",
]


def sentences_of(text: str, *, max_chars: int = 300) -> list[str]:
    """Split ``text`` into sentences (a rough, language-agnostic cut on end punctuation and
    line breaks). Overlong pieces are clipped so placeholders stay readable."""
    out: list[str] = []
    for line in text.splitlines():
        for piece in _SENTENCE_END.split(line):
            piece = piece.strip()
            if len(piece) >= 3:
                out.append(piece[:max_chars])
    return out


def schema_instance(
    schema: dict[str, Any], rng: random.Random, texts: list[str] | None = None
) -> Any:
    """A value that validates against ``schema``. ``texts`` are preferred for strings."""
    return _Builder(schema, rng, texts or _FALLBACK_SENTENCES).build(schema, depth=0)


class _Builder:
    _MAX_DEPTH = 12  # recursive schemas (a tree of nodes) stop here with the smallest value

    def __init__(self, root: dict[str, Any], rng: random.Random, texts: list[str]) -> None:
        self.root = root
        self.rng = rng
        self.texts = texts

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        ref = schema.get("$ref")
        while isinstance(ref, str) and ref.startswith("#/"):
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            # siblings of $ref (a description, a default) do not change the shape
            schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
            ref = node.get("$ref")
        return schema

    def build(self, schema: dict[str, Any] | bool, depth: int) -> Any:
        if schema is True or schema == {}:
            return self.string({})
        if schema is False:
            return None
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                options = [self.resolve(o) for o in schema[key]]
                # prefer a real value over null, so Optional fields carry content
                non_null = [o for o in options if o.get("type") != "null"]
                return self.build(self.rng.choice(non_null or options), depth + 1)
        if "allOf" in schema:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.build(merged, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"] or kind
            kind = kinds[0]
        if kind is None:
            if "properties" in schema:
                kind = "object"
            elif "items" in schema:
                kind = "array"
            else:
                kind = "string"
        if kind == "object":
            return self.object(schema, depth)
        if kind == "array":
            return self.array(schema, depth)
        if kind == "integer":
            return self.integer(schema)
        if kind == "number":
            return self.number(schema)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self.string(schema)

    def object(self, schema: dict[str, Any], depth: int) -> dict[str, Any]:
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        out: dict[str, Any] = {}
        for name, sub in props.items():
            if depth >= self._MAX_DEPTH and name not in required:
                continue
            out[name] = self.build(sub, depth + 1)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, dict) and depth < self._MAX_DEPTH:
            out["key_1"] = self.build(extra, depth + 1)
        return out

    def array(self, schema: dict[str, Any], depth: int) -> list[Any]:
        lo = int(schema.get("minItems", 0))
        hi = int(schema.get("maxItems", max(lo, 3)))
        if depth >= self._MAX_DEPTH:
            count = lo
        else:
            # 1-3 items (within the schema's bounds): enough to look like a list, cheap to judge
            low = min(max(lo, 1), hi)
            count = self.rng.randint(low, max(low, min(hi, 3)))
        prefix = schema.get("prefixItems", [])
        items = schema.get("items", {})
        out = [self.build(p, depth + 1) for p in prefix]
        while len(out) < max(count, len(prefix)):
            out.append(self.build(items, depth + 1))
        return out

    def string(self, schema: dict[str, Any]) -> str:
        text = self.rng.choice(self.texts)
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        while len(text) < lo:
            text = text + " " + self.rng.choice(self.texts)
        if hi is not None:
            text = text[: int(hi)]
        return text

    def integer(self, schema: dict[str, Any]) -> int:
        lo, hi = self._bounds(schema, integer=True)
        return self.rng.randint(int(lo), int(hi))

    def number(self, schema: dict[str, Any]) -> float:
        lo, hi = self._bounds(schema, integer=False)
        return round(self.rng.uniform(lo, hi), 3) if hi > lo else float(lo)

    @staticmethod
    def _bounds(schema: dict[str, Any], *, integer: bool) -> tuple[float, float]:
        # Unbounded numbers default to 0..10, the judge-score range of the paper.
        lo = schema.get("minimum")
        hi = schema.get("maximum")
        step = 1 if integer else 1e-3
        if "exclusiveMinimum" in schema:
            lo = schema["exclusiveMinimum"] + step
        if "exclusiveMaximum" in schema:
            hi = schema["exclusiveMaximum"] - step
        if lo is None and hi is None:
            lo, hi = 0, 10
        elif lo is None:
            lo = min(0, hi)
        elif hi is None:
            hi = max(lo + 10, lo)
        if integer:
            lo, hi = math.ceil(lo), math.floor(hi)
        return lo, max(lo, hi)
