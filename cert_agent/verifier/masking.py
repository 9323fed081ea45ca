"""How a person's name and phone are shown before they have logged in: masked."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """张三 -> 张*, 张三丰 -> 张*丰, 欧阳小明 -> 欧**明."""
    if len(name) <= 1:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    if not phone:
        return ""  # none on record: the page says so (FAQ item 15)
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"
