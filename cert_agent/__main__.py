from cert_agent.agent.cli import run

run()
