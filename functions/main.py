"""functions-framework source file:

    functions-framework --target handle --source functions/main.py

Configuration comes from the environment (see the README's configuration table). It is checked
as functions-framework imports this file, before gunicorn starts: a mistake no retry can fix
(a bad value, a missing Hook path or credentials) stops the process with one JSON line on
stderr and exit 2, so a Knative revision never becomes ready and its log says why. The same
import makes gunicorn's lines JSON and gives it khook's hooks (khook.serving).
"""

from khook.serving import under_functions_framework

under_functions_framework()

from khook.function import handle  # noqa: E402 - only once the configuration is known good

__all__ = ["handle"]
