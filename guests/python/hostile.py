"""hostile (Python): misbehaves on purpose, for the host's sandbox tests.

Args: {"mode": "loop" | "alloc" | "raise" | "pass"}; the misbehaviour happens in
`process`. `pass` returns each batch as it came: componentize-py 0.25.1 never frees
the bytes a guest returns, so a long stream shows the host renewing the instance.
"""
from floe_plugin import Plugin, export


class Hostile(Plugin):
    name = "hostile"
    description = "Misbehaves on purpose (for tests): loops, allocates, raises."
    stateless = True

    def __init__(self, schema, args):
        self.schema, self.mode = schema, args.get("mode", "pass")

    def output_schema(self):
        return self.schema

    def process(self, batch):
        if self.mode == "loop":
            while True:
                pass
        if self.mode == "alloc":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if self.mode == "raise":
            raise ValueError("hostile plugin raised on purpose")
        return batch


export(Hostile)
