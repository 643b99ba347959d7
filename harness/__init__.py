"""The harness around the product: the embedded local stack (``stack``), the demo (``demo``), the
scenario suite (``scenario``) and the ``triage24`` command that adds them to the library's CLI.
Dev and embedded-default tooling: ``diagnostics`` never imports it."""
