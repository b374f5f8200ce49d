"""Keep tokens and API keys out of everything a run writes: results.json, W&B, TensorBoard, logs.

Three rules decide what is a secret:
- the value of a token-carrying environment variable (HF_TOKEN, WANDB_API_KEY, ...), wherever it appears;
- a config value whose key names a credential (``api_key``, ``hf_token``, ``password``, ...), whatever its
  length or type (``+db.password=1234`` is parsed as a number and is still a password), wherever it appears;
- a string in a known token format: ``hf_...``, ``sk-...``, ``ghp_...``, ``wandb_v1_...``, AWS access key ids.

A string is never redacted merely because it looks random (a data directory named
``TofuCopy2024Nov28Forget01Version2`` or a commit hash stays as is): the record must say what the run read.

A name is a credential's when one of its words (split at ``_ . -``) is a credential word, so
``DB_PASSWORD`` is and ``PWD`` / ``OLDPWD`` (the working directory) are not. A value under such a name
that is an existing path (``SSH_AUTH_SOCK``'s socket, a key file's location) is not searched for in other
text. Where a value is searched for, a long one (``MIN_SECRET_CHARS`` or more) is replaced wherever it
occurs; a shorter one only where it stands as a whole word (not inside a longer word or number), so the
password ``Hunter2pass`` goes from ``+db.password=Hunter2pass,logger=wandb`` while a 4-letter one does not
eat every word containing those letters. Environment variables shorter than ``MIN_SECRET_CHARS`` are not
searched for (``PWD``-like values and flags, not tokens).

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
# environment values shorter than this are not tokens; config values under credential names are searched
# for whatever their length, a short one as a whole word only
MIN_SECRET_CHARS = 16

_KEY_SHAPES = re.compile(
    r"hf_[A-Za-z0-9]{20,}"  # Hugging Face
    r"|wandb_v\d+_[A-Za-z0-9_]{20,}"  # W&B (new format)
    r"|sk-[A-Za-z0-9_\-]{20,}"  # OpenAI / Anthropic style
    r"|gh[pousr]_[A-Za-z0-9]{30,}"  # GitHub
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
)


def is_secret_name(name: str) -> bool:
    """A config key or environment variable name that holds a credential (``api_key``, ``HF_TOKEN``)."""
    return bool(_SECRET_NAME.search(str(name)))


def _not_a_path(value: str) -> bool:
    try:
        return not Path(value).expanduser().exists()
    except (OSError, ValueError):  # too long for a path, or a NUL inside: not a path
        return True


def could_be_secret(value, min_chars: int = MIN_SECRET_CHARS) -> bool:
    """Worth searching for in other text: a non-empty string of at least ``min_chars``, not a path on this machine."""
    return isinstance(value, str) and len(value) >= max(1, min_chars) and _not_a_path(value)


def env_secrets() -> list[str]:
    """Values of credential-carrying environment variables set now (longest first, for substitution)."""
    names = set(SECRET_ENV_VARS) | {k for k in os.environ if is_secret_name(k)}
    values = {os.environ[k] for k in names if could_be_secret(os.environ.get(k))}
    return sorted(values, key=len, reverse=True)


def _replace(text: str, value: str) -> str:
    if len(value) >= MIN_SECRET_CHARS:
        return text.replace(value, REDACTED)
    # a short one as a whole word: not inside a longer run of letters and digits
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", REDACTED, text)


def scrub_text(text: str, extra: list[str] | tuple = ()) -> str:
    """``text`` with every secret value (environment, ``extra``: the config's credential values) and every string
    in a known token format replaced."""
    if not text:
        return text
    extra = [v for v in extra if could_be_secret(v, 1)]
    for value in [*env_secrets(), *sorted(extra, key=len, reverse=True)]:
        if value and value in text:
            text = _replace(text, value)
    return _KEY_SHAPES.sub(REDACTED, text)


def scrub(obj, extra: list[str] | tuple = ()):
    """A copy of a JSON-like object with secrets replaced; keys are kept, their values redacted."""
    if isinstance(obj, dict):
        return {k: _scrub_item(k, v, extra) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v, extra) for v in obj]
    if isinstance(obj, str):
        return scrub_text(obj, extra)
    return obj


def _is_credential_value(value) -> bool:
    # a number counts: Hydra parses `+db.password=1234` as an int; a flag or an empty value holds no secret
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""


def _scrub_item(key, value, extra):
    if is_secret_name(key) and _is_credential_value(value):
        return REDACTED
    return scrub(value, extra)


def secret_values(obj) -> list[str]:
    """The values under credential-named keys of a config, as text (to redact wherever else they appear)."""
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_name(k) and _is_credential_value(v):
                if could_be_secret(str(v), 1):
                    found.append(str(v))
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
        clean = scrub_text(message, self.extra)
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
    return scrub_text(line, extra)
