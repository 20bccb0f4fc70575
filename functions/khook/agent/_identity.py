"""The identity khook presents to Kagent (``X-User-Id``), per tenant, from a template.

``{namespace}`` and ``{name}`` are the Hook's namespace and name; a template without
placeholders is one fixed identity for every tenant. The template is checked once at start-up
(:func:`check_user_id_template`) and every expanded value again before it becomes a header, so
neither an operator's typo nor a strange Hook name can inject a header line.
"""

from __future__ import annotations

import functools
import string

PLACEHOLDERS = ("namespace", "name")
MAX_USER_ID_CHARS = 512  # longer identities are refused
# The longest Kubernetes names: a namespace is a DNS-1123 label, a Hook name a subdomain.
_LONGEST = {"namespace": 63, "name": 253}


class UserIdTemplateError(ValueError):
    """The user id template (``KHOOK_USER_ID``) or a value expanded from it is unusable."""


@functools.lru_cache(maxsize=64)
def _parse(template: str) -> tuple[tuple[str, str | None], ...]:
    """The template as (literal text, placeholder or None) pairs; raises if it is not usable."""
    try:
        pieces = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone "{" or "}"
        raise UserIdTemplateError(f"user id template {template!r}: {exc}") from None
    parsed: list[tuple[str, str | None]] = []
    for literal, field, spec, conversion in pieces:
        _check_text(literal, f"user id template {template!r}")
        if field is None:
            parsed.append((literal, None))
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            raise UserIdTemplateError(
                f"user id template {template!r}: unknown placeholder {shown}; use {allowed}"
            )
        parsed.append((literal, field))
    return tuple(parsed)


def _check_text(text: str, what: str) -> None:
    # A header value: printable ASCII only, so no CR/LF (header injection) and no bytes a
    # proxy or Kagent could read differently.
    bad = next((c for c in text if not " " <= c <= "~"), None)
    if bad is not None:
        raise UserIdTemplateError(f"{what}: character {bad!r} is not allowed in a header")


def check_user_id_template(template: str) -> None:
    """Raise :class:`UserIdTemplateError` unless ``template`` can make ``X-User-Id`` values.
    An empty template is allowed: khook then sends no ``X-User-Id`` at all."""
    _parse(template)
    if template != template.strip():
        raise UserIdTemplateError(
            f"user id template {template!r}: leading or trailing spaces are not allowed"
        )
    longest = sum(len(text) + _LONGEST.get(field or "", 0) for text, field in _parse(template))
    if longest > MAX_USER_ID_CHARS:
        raise UserIdTemplateError(
            f"user id template {template!r} can expand to more than {MAX_USER_ID_CHARS} chars"
        )


def user_id_for(template: str, *, namespace: str, name: str) -> str:
    """The identity for a Hook ``namespace/name``. Raises :class:`UserIdTemplateError` when the
    template needs a part the caller did not give, or the result is not a safe header value."""
    values = {"namespace": namespace, "name": name}
    out: list[str] = []
    for literal, field in _parse(template):
        out.append(literal)
        if field is not None:
            if not values[field]:
                raise UserIdTemplateError(
                    f"user id template {template!r} needs the Hook's {field}, which is missing"
                )
            out.append(values[field])
    value = "".join(out)
    _check_text(value, "user id")
    if len(value) > MAX_USER_ID_CHARS:
        raise UserIdTemplateError(f"user id is longer than {MAX_USER_ID_CHARS} characters")
    return value
