"""Install artifacts for the desktop agent, rendered from cert_agent.desktop.autostart and browser_policy."""
