from cert_agent.cli import run

run()
