"""User accounts for several people on one server.

Who may log in (``users.yaml``, ``--gradio-auth``), how passwords are checked (argon2id), which API
key belongs to whom (``api-keys.yaml``), how many failed log-ins are allowed, and the audit log of
what admins did. Each user gets a safe folder name of their own (:mod:`.names`). The package knows
nothing of Gradio or of the settings: callers pass plain values. Import the submodules directly.
"""
