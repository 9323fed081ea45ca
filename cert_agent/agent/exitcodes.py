"""The ``cert-agent`` command's exit statuses (docs/errors.md lists them too)."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_ALREADY_RUNNING = 3  # `serve` while this user's agent (or a change-pin) is running
EXIT_PORT_TAKEN = 4  # `serve` could not hold every loopback address on any of its ports
EXIT_UNSAFE_DIR = 5  # the lock's or pairing keys' folder is a link or another user's
