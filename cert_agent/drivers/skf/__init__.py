"""The SKF driver (GM/T 0016-2012: ``driver.SkfDriver``) and its parts, over ctypes: ``library``
(the calls, each checked), ``structs`` (the packed structures), ``returncodes`` (SAR -> errors)."""

from cert_agent.drivers.skf.driver import SkfDriver

__all__ = ["SkfDriver"]
