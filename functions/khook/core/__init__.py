"""The pure core: typed facts and decisions, no I/O.

Nothing here imports an HTTP, Kubernetes, storage or YAML library; the shell hands the core
plain data and acts on what it returns. import-linter holds that line (see pyproject.toml).
"""
