"""``python -m host.generate``: the generation CLI of ``host.llm.generate`` (``--chat`` too)."""

import sys

from host.llm.generate import main

if __name__ == "__main__":
    sys.exit(main())
