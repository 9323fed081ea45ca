"""The agent daemon: a WebSocket on the loopback interface that tax bureau pages talk to."""
