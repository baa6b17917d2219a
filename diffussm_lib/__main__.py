"""``python -m diffussm_lib ...`` is the ``diffussm`` command (see ``diffussm_lib.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
