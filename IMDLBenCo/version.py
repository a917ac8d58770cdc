"""Single source of the package version (read by pyproject and `benco -v`)."""

__version__ = "0.2.0"


def parse_version_info(version: str) -> tuple:
    """Split ``"1.3.0rc1"`` into ``(1, 3, 0, "rc1")``."""
    parts: list = []
    for piece in version.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        rest = piece[len(digits):]
        if digits:
            parts.append(int(digits))
        if rest:
            parts.append(rest)
    return tuple(parts)


version_info = parse_version_info(__version__)
