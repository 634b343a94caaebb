"""{{name}}."""

from {{module}}.core import mean

__all__ = ["mean"]
