"""Install artifacts for the desktop agent, rendered from cert_agent.agent.autostart and browser_policy."""
