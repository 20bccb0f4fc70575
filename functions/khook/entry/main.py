"""The functions-framework source file that `khook serve` hands to functions-framework.

It sits alone in its directory because functions-framework puts the source's directory on
sys.path; a directory of khook's own modules there could shadow other imports.
"""

from khook.function import handle

__all__ = ["handle"]
