"""What the sub-commands share: the one error they raise for bad input, and how they print time."""


class UsageError(Exception):
    """Bad input from the command line: printed as one line, exit code 2."""


def duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m05s: how the sub-commands print a span of time."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
