"""Desktop integration: start at login (``autostart``), the browsers' managed policy
(``browser_policy``), and the file formats both write (``fileformats``). Used by the ``cert-agent``
command and ``installer/render.py``; the daemon never imports it."""
