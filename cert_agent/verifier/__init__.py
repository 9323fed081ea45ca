"""The verifier: the relying party's side of certificate login (cert-verifier)."""
