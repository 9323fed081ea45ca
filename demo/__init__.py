"""The embedded demo: a test PKI on SoftHSM2, the agent and the verifier wired together (not installed)."""
