class ExecutionBlocker:
    """Returned in place of an output: nodes that use it are skipped (with ``message`` as error)."""

    def __init__(self, message):
        self.message = message
