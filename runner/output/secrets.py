"""Keep tokens and API keys out of everything a run writes: results.json, W&B, TensorBoard, logs.

Three rules decide what is a secret:
- the value of a token-carrying environment variable (HF_TOKEN, WANDB_API_KEY, ...), wherever it appears;
- a config value whose key names a credential (``api_key``, ``hf_token``, ``password``, ...);
- a string shaped like a key: ``hf_...``, ``sk-...``, ``ghp_...``, W&B's 40-hex or ``wandb_v1_...``
  keys, AWS access key ids, long base64 blobs mixing upper case, lower case and digits.

A name is a credential's when one of its words (split at ``_ . -``) is a credential word, so
``DB_PASSWORD`` is and ``PWD`` / ``OLDPWD`` (the working directory) are not. A value found this way is
searched for in other text only when it could be a real secret: at least ``MIN_SECRET_CHARS`` long
and not an existing path (``SSH_AUTH_SOCK``'s socket, a key file's location), so ordinary paths and
short words are never replaced inside other values.

A secret is replaced by ``<redacted>``; the rest of the text is kept, so a URL with a token inside
stays readable.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

REDACTED = "<redacted>"

# environment variables that carry credentials; any other variable whose name looks like one counts too
SECRET_ENV_VARS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_TOKEN",
    "WANDB_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GITHUB_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
_SECRET_NAME = re.compile(r"(^|[_.\-])(token|key|apikey|secret|password|passwd|credentials?|auth)($|[_.\-])", re.I)
# shorter values are never searched for elsewhere: real tokens are 20+ characters, and "fp32" or "main" are not
MIN_SECRET_CHARS = 16
# hashes that are not secrets and are worth keeping (a model revision pins the weights)
_HASH_NAME = re.compile(r"revision|commit|sha|hash|checksum|digest", re.I)

_KEY_SHAPES = re.compile(
    r"hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|wandb_v\d+_[A-Za-z0-9_]{20,}"  # W&B (new format)
    r"|sk-[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic style
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
)
_LONG_HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{40,}(?![0-9a-fA-F])")  # W&B (classic), generic API keys
# no "/" in the class: a path's segments are judged one by one
_BASE64ISH = re.compile(r"(?<![A-Za-z0-9+=_\-])[A-Za-z0-9+_\-]{32,}={0,2}(?![A-Za-z0-9+=_\-])")


def _looks_like_base64_key(s: str) -> bool:
    # long, and mixing upper, lower and digits: a random key, not a word, a path or a number
    return any(c.isupper() for c in s) and any(c.islower() for c in s) and sum(c.isdigit() for c in s) >= 4


def is_secret_name(name: str) -> bool:
    """A config key or environment variable name that holds a credential (``api_key``, ``HF_TOKEN``)."""
    return bool(_SECRET_NAME.search(str(name)))


def could_be_secret(value) -> bool:
    """Worth searching for in other text: long enough to be a token, and not a path on this machine."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        return False
    try:
        return not Path(value).expanduser().exists()
    except (OSError, ValueError):  # too long for a path, or a NUL inside: not a path
        return True


def env_secrets() -> list[str]:
    """Values of credential-carrying environment variables set now (longest first, for substitution)."""
    names = set(SECRET_ENV_VARS) | {k for k in os.environ if is_secret_name(k)}
    values = {os.environ[k] for k in names if could_be_secret(os.environ.get(k))}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, extra: list[str] | tuple = (), keep_hex: bool = False) -> str:
    """``text`` with every secret value (environment, ``extra``, key-shaped strings) replaced."""
    if not text:
        return text
    extra = [v for v in extra if could_be_secret(v)]
    for value in [*env_secrets(), *sorted(extra, key=len, reverse=True)]:
        if value and value in text:
            text = text.replace(value, REDACTED)
    text = _KEY_SHAPES.sub(REDACTED, text)
    if not keep_hex:
        text = _LONG_HEX.sub(REDACTED, text)
    return _BASE64ISH.sub(lambda m: REDACTED if _looks_like_base64_key(m.group(0)) else m.group(0), text)


def scrub(obj, extra: list[str] | tuple = (), _name: str = ""):
    """A copy of a JSON-like object with secrets replaced; keys are kept, their values redacted."""
    if isinstance(obj, dict):
        return {k: _scrub_item(k, v, extra) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, extra, _name) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, extra, keep_hex=bool(_HASH_NAME.search(_name)))
    return obj


def _scrub_item(key, value, extra):
    if is_secret_name(key) and isinstance(value, str) and value:
        return REDACTED
    return scrub(value, extra, str(key))


def secret_values(obj) -> list[str]:
    """The string values under credential-named keys of a config (to redact wherever else they appear)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_name(k) and could_be_secret(v):
                found.append(v)
            else:
                found.extend(secret_values(v))
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            found.extend(secret_values(v))
    return found


def scrub_overrides(overrides: list[str], extra: list[str] | tuple = ()) -> list[str]:
    """Command-line overrides with the values of credential-named keys (``+hub.api_key=...``) redacted."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and is_secret_name(key.lstrip("+~").split("@")[0]):
            out.append(f"{key}={REDACTED}")
        else:
            out.append(scrub_text(item, extra))
    return out


class RedactingFilter(logging.Filter):
    """Rewrites each log record's message with secrets replaced, before any handler writes it."""

    def __init__(self, extra: list[str] | tuple = ()):
        super().__init__()
        self.extra = list(extra)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub_text(message, self.extra, keep_hex=True)  # log lines name cache hashes and commits
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_filter(extra: list[str] | tuple = ()) -> RedactingFilter:
    """Attach a redacting filter to every handler of the root logger (Hydra's console and job log file).

    Handler filters see records from every logger, unlike a filter on the root logger itself.
    Installing again replaces the previous filter (the secrets of the new job apply).
    """
    new = RedactingFilter(extra)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(new)
    return new


def scrub_files(paths, extra: list[str] | tuple = ()) -> None:
    """Rewrite text files written before the job could scrub them (Hydra's ``.hydra/*.yaml``)."""
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
        lines = [_scrub_yaml_line(line, extra) for line in text.splitlines(keepends=True)]
        clean = "".join(lines)
        if clean != text:
            path.write_text(clean)


_YAML_ITEM = re.compile(r"^(\s*(?:-\s+)?)([+~]?[\w.@/\-]+)(\s*[:=]\s*)(\S.*?)(\s*)$")


def _scrub_yaml_line(line: str, extra) -> str:
    # `api_key: value` and `- +x.api_key=value` lines: the value goes, whatever its shape
    m = _YAML_ITEM.match(line.rstrip("\n"))
    if m and is_secret_name(m.group(2).lstrip("+~")):
        end = "\n" if line.endswith("\n") else ""
        return f"{m.group(1)}{m.group(2)}{m.group(3)}{REDACTED}{end}"
    return scrub_text(line, extra, keep_hex=True)
