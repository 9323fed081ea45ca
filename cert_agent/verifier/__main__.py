from cert_agent.verifier.cli import run

run()
