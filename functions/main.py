"""functions-framework source file:

    functions-framework --target handle --source functions/main.py

Configuration comes from the environment (see the README's configuration table).
"""

from khook.function import handle

__all__ = ["handle"]
