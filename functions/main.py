"""functions-framework source file:

    functions-framework --target handle --source functions/main.py

Configuration comes from the environment (see the README's configuration table). It is checked
as functions-framework imports this file, before gunicorn starts: a mistake no retry can fix
(a bad value, a missing Hook path or credentials) stops the process with one JSON line on
stderr and exit 2, so a Knative revision never becomes ready and its log says why. The same
import makes gunicorn's lines JSON and gives it khook's hooks (khook.serving), and makes each
worker hand events straight to the function.
"""

from khook.function import direct_posts, handle
from khook.serving import under_functions_framework

# Each worker serves functions-framework's app with every POST, every event, handed straight
# to the function, as under `khook serve` (khook.function.direct_posts).
under_functions_framework(wrap_app=direct_posts)

__all__ = ["handle"]
