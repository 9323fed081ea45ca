"""The daemon's view of the media (``service.TokenService``) and its parts."""

from cert_agent.agent.tokens.events import CardEvent, TokenEvent
from cert_agent.agent.tokens.pins import USER_ACTION
from cert_agent.agent.tokens.service import TokenService

__all__ = ["USER_ACTION", "CardEvent", "TokenEvent", "TokenService"]
