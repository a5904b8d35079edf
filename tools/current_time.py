"""Shipped tool: the local date, time and time zone."""

from datetime import datetime

READ_ONLY = True


def current_time() -> str:
    """Get the current local date, time, weekday and time zone of the user's computer."""
    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now:%Y-%m-%d %H:%M:%S}, {now:%A}, time zone {now.tzname()} (UTC{offset[:3]}:{offset[3:]})"
