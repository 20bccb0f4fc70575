"""The functions-framework source file that `khook serve` hands to functions-framework.

It sits alone in its directory because functions-framework puts the source's directory on
sys.path; a directory of khook's own modules there could shadow other imports. It checks
nothing itself: `khook serve` has checked its settings (flags included, which the environment
this file could read does not hold) before it gets here.
"""

from khook.function import handle

__all__ = ["handle"]
